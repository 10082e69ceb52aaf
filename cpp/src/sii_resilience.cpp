// Environments, backoff and the circuit breaker of the SII client.
#include <algorithm>
#include <cmath>

#include "dte/sii_client.hpp"

namespace dte::sii {

std::string to_string(Environment e) {
  switch (e) {
    case Environment::kCertification: return "certification";
    case Environment::kProduction: return "production";
    case Environment::kSimulator: return "simulator";
  }
  return "?";
}

Environment environment_from_string(std::string_view s) {
  if (s == "certification" || s == "cert" || s == "maullin") return Environment::kCertification;
  if (s == "production" || s == "prod" || s == "palena") return Environment::kProduction;
  if (s == "simulator" || s == "sim") return Environment::kSimulator;
  throw DteError("sii.bad_environment",
                 "unknown environment '" + std::string(s) + "' (certification, production, simulator)");
}

Endpoints default_endpoints(Environment e, std::string_view simulator_base) {
  Endpoints ep;
  switch (e) {
    case Environment::kCertification:
      ep.soap_base = ep.upload_base = "https://maullin.sii.cl";
      ep.claims_url = "https://ws2.sii.cl/WSREGISTRORECLAMODTECERT/registroreclamodteservice";
      ep.boleta_api_base = "https://apicert.sii.cl";
      ep.boleta_envio_base = "https://pangal.sii.cl";
      ep.soap_namespace_host = "maullin";
      break;
    case Environment::kProduction:
      ep.soap_base = ep.upload_base = "https://palena.sii.cl";
      ep.claims_url = "https://ws1.sii.cl/WSREGISTRORECLAMODTE/registroreclamodteservice";
      ep.boleta_api_base = "https://api.sii.cl";
      ep.boleta_envio_base = "https://rahue.sii.cl";
      ep.soap_namespace_host = "palena";
      break;
    case Environment::kSimulator: {
      std::string base(simulator_base);
      while (!base.empty() && base.back() == '/') base.pop_back();
      if (base.empty())
        throw DteError("sii.bad_environment", "the simulator environment needs its base URL");
      ep.soap_base = ep.upload_base = base;
      ep.claims_url = base + "/WSREGISTRORECLAMODTECERT/registroreclamodteservice";
      ep.boleta_api_base = base + "/apicert";
      ep.boleta_envio_base = base + "/pangal";
      ep.soap_namespace_host = "maullin";
      break;
    }
  }
  return ep;
}

double backoff_delay(const RetryPolicy& p, int attempt, double u) {
  if (attempt <= 1) return 0.0;
  double d = p.base_delay_s * std::pow(2.0, attempt - 2);
  d = std::min(d, p.max_delay_s);
  double j = std::clamp(p.jitter, 0.0, 1.0);
  u = std::clamp(u, 0.0, 1.0);
  return std::max(0.0, d * (1.0 - j * u));
}

std::string to_string(BreakerState s) {
  switch (s) {
    case BreakerState::kClosed: return "closed";
    case BreakerState::kOpen: return "open";
    case BreakerState::kHalfOpen: return "half_open";
  }
  return "?";
}

BreakerState CircuitBreaker::state(double now) {
  std::lock_guard lock(mu_);
  if (state_ == BreakerState::kOpen && now - opened_at_ >= policy_.open_seconds)
    state_ = BreakerState::kHalfOpen;
  return state_;
}

bool CircuitBreaker::allow(double now) {
  std::lock_guard lock(mu_);
  if (state_ == BreakerState::kOpen) {
    if (now - opened_at_ < policy_.open_seconds) return false;
    state_ = BreakerState::kHalfOpen;
    successes_ = 0;
    trial_in_flight_ = false;
  }
  if (state_ == BreakerState::kHalfOpen) {
    if (trial_in_flight_) return false;
    trial_in_flight_ = true;
  }
  return true;
}

void CircuitBreaker::record_success(double) {
  std::lock_guard lock(mu_);
  failures_ = 0;
  if (state_ == BreakerState::kHalfOpen) {
    trial_in_flight_ = false;
    if (++successes_ >= std::max(1, policy_.half_open_successes)) state_ = BreakerState::kClosed;
  }
}

void CircuitBreaker::record_failure(double now) {
  std::lock_guard lock(mu_);
  if (state_ == BreakerState::kHalfOpen) {
    state_ = BreakerState::kOpen;
    opened_at_ = now;
    trial_in_flight_ = false;
    return;
  }
  if (++failures_ >= std::max(1, policy_.failure_threshold) && state_ == BreakerState::kClosed) {
    state_ = BreakerState::kOpen;
    opened_at_ = now;
  }
}

}  // namespace dte::sii
