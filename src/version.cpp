// Version string compiled in from CMake.
#include "version.hpp"
namespace sigsrv {
std::string_view version() {
  return SIGNAL_VERSION;
}
}  // namespace sigsrv
