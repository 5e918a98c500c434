// Plain HTTP answers on the listening ports (PROTOCOL.md section 3): pure routing.
#pragma once

#include <string>
#include <string_view>

namespace sigsrv {

struct HttpAnswer {
  unsigned status = 200;
  std::string body;
  std::string_view content_type = "text/plain; charset=utf-8";
};

enum class PortKind { kMain, kHealth };

// `metrics_text` is only called for /metrics, so a scrape is the only thing that renders it.
template <class MetricsFn>
HttpAnswer route_http(std::string_view target, PortKind port, bool ready, MetricsFn metrics_text) {
  const std::string_view path = target.substr(0, target.find('?'));
  if (path == "/healthz") return {200, "ok"};
  if (path == "/readyz") return ready ? HttpAnswer{200, "ready"} : HttpAnswer{503, "not-ready"};
  if (path == "/metrics") {
    return {200, metrics_text(), "text/plain; version=0.0.4; charset=utf-8"};
  }
  if (port == PortKind::kHealth) return {404, "not-found"};
  return {426, "Upgrade Required"};
}

}  // namespace sigsrv
