// The build's version string, from CMake's project version.
#pragma once
#include <string_view>
namespace sigsrv {
std::string_view version();
}
