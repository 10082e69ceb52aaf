// The SII client: authentication with a shared token cache, requests with retries, breakers and
// renew-once-on-expiry, uploads that are never repeated blindly, status queries and claims.
#include <openssl/sha.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <random>
#include <set>
#include <thread>

#include "dte/pool.hpp"
#include "dte/rut.hpp"
#include "dte/signer.hpp"
#include "dte/sii_client.hpp"
#include "dte/xml.hpp"
#include "sii_internal.hpp"

namespace dte::sii {

namespace {

using detail::HttpRequest;
using detail::HttpResponse;
using detail::MimePart;

constexpr const char* kReclamoNs = "http://ws.registroreclamodte.diii.sdi.sii.cl";

double mono_now() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

std::string sha256_hex(std::string_view data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : md) {
    out += hex[c >> 4];
    out += hex[c & 15];
  }
  return out;
}

std::pair<std::string, std::string> split_rut(std::string_view rut) {
  Rut r = Rut::parse(rut);
  return {std::to_string(r.body()), std::string(1, r.dv())};
}

std::string rpc_envelope(std::string_view op, std::string_view ns,
                         const std::vector<std::pair<std::string, std::string>>& params) {
  std::string args;
  for (const auto& [k, v] : params)
    args += "<" + k + " xsi:type=\"xsd:string\">" + escape_text(v) + "</" + k + ">";
  return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
         "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" "
         "xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" "
         "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body>"
         "<ns1:" + std::string(op) + " xmlns:ns1=\"" + std::string(ns) + "\" "
         "soapenv:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\">" + args +
         "</ns1:" + std::string(op) + "></soapenv:Body></soapenv:Envelope>";
}

std::string literal_envelope(std::string_view op, const std::vector<std::pair<std::string, std::string>>& params) {
  std::string args;
  for (const auto& [k, v] : params) args += "<" + k + ">" + escape_text(v) + "</" + k + ">";
  return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
         "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" "
         "xmlns:ws=\"" + std::string(kReclamoNs) + "\"><soapenv:Body><ws:" + std::string(op) + ">" +
         args + "</ws:" + std::string(op) + "></soapenv:Body></soapenv:Envelope>";
}

bool contains_ci(std::string_view hay, std::string_view needle) {
  auto it = std::search(hay.begin(), hay.end(), needle.begin(), needle.end(), [](char a, char b) {
    return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
  });
  return it != hay.end();
}

std::string snippet(std::string_view body) {
  std::string s(body.substr(0, 200));
  for (auto& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

// Judges the HTTP status of an answer that should be 200; 5xx is an unclear transport outcome.
void check_http(const HttpResponse& r, const char* what) {
  if (r.status >= 200 && r.status < 300) return;
  std::string msg = std::string(what) + ": HTTP " + std::to_string(r.status) + " " + snippet(r.body);
  if (r.status >= 500) throw SiiTransportError("sii.http_" + std::to_string(r.status), msg, true);
  if (r.status == 401) throw SiiAuthError("sii.token_expired", msg);
  if (r.status == 429) throw SiiTransportError("sii.http_429", msg, false);
  throw SiiRejected("sii.http_" + std::to_string(r.status), msg, std::to_string(r.status));
}

bool is_token_signal(const SiiAuthError& e) { return e.code() == "sii.token_expired"; }

// ------------------------------------------------------------------------------- token cache

// Process-wide, shared by every client and thread: one entry per (environment + host, signer,
// certificate, api family). Fetching holds the entry's mutex so concurrent callers wait for one
// renewal instead of each asking SII for a token.
class TokenCache {
 public:
  struct Entry {
    std::mutex mu;
    std::string token;
    double obtained_at = 0;
  };
  static TokenCache& shared() {
    static TokenCache* cache = new TokenCache();  // leaked: used from pool threads at exit
    return *cache;
  }
  Entry& entry(const std::string& key) {
    std::lock_guard lock(mu_);
    auto& slot = entries_[key];
    if (!slot) slot = std::make_unique<Entry>();
    return *slot;
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<Entry>> entries_;
};

}  // namespace

// ------------------------------------------------------------------------------------ Impl

struct Client::Impl {
  ClientConfig cfg;
  std::shared_ptr<const Certificate> cert;
  std::string signer_rut;
  detail::HttpShare share;
  std::mutex mu;  // breakers, rng, unclear
  std::map<std::string, std::unique_ptr<CircuitBreaker>> breakers;
  std::mt19937_64 rng;
  std::set<std::string> unclear;  // SHA-256 of files whose last upload outcome was unclear

  Impl(ClientConfig c, std::shared_ptr<const Certificate> k) : cfg(std::move(c)), cert(std::move(k)) {
    if (!cert) throw DteError("sii.no_certificate", "the SII client needs a certificate");
    if (!cert->has_private_key())
      throw CertificateError("cert.no_private_key", "the SII client needs the certificate's private key");
    signer_rut = cert->info().signer_rut;
    if (signer_rut.empty())
      throw CertificateError("cert.no_rut", "the certificate carries no RUT of its holder");
    if (cfg.endpoints.soap_base.empty()) {
      if (cfg.environment == Environment::kSimulator)
        throw DteError("sii.bad_environment", "simulator environment needs endpoints (its base URL)");
      cfg.endpoints = default_endpoints(cfg.environment);
    }
    rng.seed(cfg.random_seed ? cfg.random_seed : std::random_device{}());
  }

  CircuitBreaker& breaker(const std::string& name) {
    std::lock_guard lock(mu);
    auto& b = breakers[name];
    if (!b) b = std::make_unique<CircuitBreaker>(cfg.breaker);
    return *b;
  }

  // The endpoint's breaker: the shared one when configured, else this client's.
  bool breaker_allow(const std::string& endpoint) {
    CircuitBreaker& br = breaker(endpoint);  // also remembers the name for breaker_states()
    return cfg.shared ? cfg.shared->breaker_allow(endpoint, cfg.breaker) : br.allow(mono_now());
  }

  void breaker_record(const std::string& endpoint, bool ok) {
    CircuitBreaker& br = breaker(endpoint);
    if (cfg.shared)
      cfg.shared->breaker_record(endpoint, ok, cfg.breaker);
    else if (ok)
      br.record_success(mono_now());
    else
      br.record_failure(mono_now());
  }

  void pause(int next_attempt) {
    double u;
    {
      std::lock_guard lock(mu);
      u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
    }
    double d = backoff_delay(cfg.retry, next_attempt, u);
    if (d > 0) std::this_thread::sleep_for(std::chrono::duration<double>(d));
  }

  HttpRequest request(std::string url) const {
    HttpRequest r;
    r.url = std::move(url);
    r.connect_timeout_s = cfg.connect_timeout_s;
    r.timeout_s = cfg.timeout_s;
    r.verify_tls = cfg.verify_tls;
    r.ca_file = cfg.ca_file;
    return r;
  }

  HttpResponse perform(const HttpRequest& r) { return detail::perform(share, r); }

  // Runs `fn` with retries on transport errors, guarded by the endpoint's breaker.
  template <typename F>
  auto with_retry(const std::string& endpoint, F&& fn) -> decltype(fn()) {
    int attempts = std::max(1, cfg.retry.max_attempts);
    for (int attempt = 1;; ++attempt) {
      auto record = [&](bool ok) { breaker_record(endpoint, ok); };
      try {
        if (!breaker_allow(endpoint))
          throw SiiTransportError("sii.circuit_open", "circuit open for endpoint '" + endpoint + "'", false);
        throttle();
        try {
          auto out = fn();
          record(true);
          return out;
        } catch (const SiiTransportError&) {
          record(false);
          throw;
        } catch (...) {
          record(true);  // SII answered: the endpoint works
          throw;
        }
      } catch (const SiiTransportError&) {
        if (attempt >= attempts) throw;
        pause(attempt + 1);
      }
    }
  }

  std::string cache_key(std::string_view family) const {
    const std::string& host = family == "boleta" ? cfg.endpoints.boleta_api_base : cfg.endpoints.soap_base;
    return to_string(cfg.environment) + "|" + host + "|" + signer_rut + "|" +
           cert->info().sha256_fingerprint + "|" + std::string(family);
  }

  // Waits for the shared rate limit (token bucket over every process), when one is configured.
  void throttle() {
    if (!cfg.shared || cfg.rate_per_s <= 0) return;
    double burst = cfg.rate_burst > 0 ? cfg.rate_burst : std::max(1.0, cfg.rate_per_s);
    const std::string bucket = to_string(cfg.environment) + "|" + cfg.endpoints.soap_base;
    for (;;) {
      double wait = cfg.shared->rate_acquire(bucket, cfg.rate_per_s, burst);
      if (wait <= 0) return;
      std::this_thread::sleep_for(std::chrono::duration<double>(std::min(wait, 1.0)));
    }
  }

  std::string fetch_token(std::string_view family) {
    return family == "boleta" ? fetch_boleta_token() : fetch_soap_token();
  }

  // The shared cache: read it; else take the renewal lock (one renewer among all processes),
  // re-read (someone may have renewed while we waited), renew and publish.
  std::string shared_token(const std::string& key, std::string_view family, bool force) {
    SharedState& st = *cfg.shared;
    if (!force)
      if (auto t = st.token_get(key)) return *t;
    std::string owner;
    {
      std::lock_guard lock(mu);
      owner = signer_rut + ":" + std::to_string(rng());
    }
    double lease = std::max(5.0, cfg.connect_timeout_s + 2 * cfg.timeout_s);
    double deadline = mono_now() + lease + cfg.timeout_s;
    while (!st.token_try_lock(key, owner, lease)) {
      if (mono_now() > deadline)
        throw SiiAuthError("sii.token_lock_timeout", "no token: another process kept the renewal lock");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      if (!force)
        if (auto t = st.token_get(key)) return *t;
    }
    struct Unlock {
      SharedState& st;
      const std::string& key;
      const std::string& owner;
      ~Unlock() { st.token_unlock(key, owner); }
    } unlock{st, key, owner};
    if (!force)
      if (auto t = st.token_get(key)) return *t;
    std::string t = fetch_token(family);
    st.token_put(key, t, cfg.token_ttl_s);
    return t;
  }

  std::string token(std::string_view family, bool force) {
    auto& e = TokenCache::shared().entry(cache_key(family));
    std::lock_guard lock(e.mu);
    if (cfg.shared) return shared_token(cache_key(family), family, force);
    double now = mono_now();
    if (!force && !e.token.empty() && now - e.obtained_at < cfg.token_ttl_s) return e.token;
    e.token.clear();
    e.token = family == "boleta" ? fetch_boleta_token() : fetch_soap_token();
    e.obtained_at = mono_now();
    return e.token;
  }

  // Drops `stale` unless another thread already replaced it.
  void invalidate(std::string_view family, const std::string& stale) {
    auto& e = TokenCache::shared().entry(cache_key(family));
    std::lock_guard lock(e.mu);
    if (cfg.shared) cfg.shared->token_drop(cache_key(family), stale);
    if (stale.empty() || e.token == stale) e.token.clear();
  }

  // Renew and retry once: the second expiry signal becomes SiiAuthError "sii.token_rejected".
  template <typename F>
  auto with_token(std::string_view family, F&& fn) -> decltype(fn(std::string())) {
    std::string tok = token(family, false);
    try {
      return fn(tok);
    } catch (const SiiAuthError& e) {
      if (!is_token_signal(e)) throw;
      invalidate(family, tok);
    }
    std::string fresh = token(family, false);
    try {
      return fn(fresh);
    } catch (const SiiAuthError& e) {
      if (!is_token_signal(e)) throw;
      invalidate(family, fresh);
      throw SiiAuthError("sii.token_rejected",
                         std::string("token still refused after one renewal: ") + e.what());
    }
  }

  // ------------------------------------------------------------------ SOAP auth

  std::string soap_ns(std::string_view path) const {
    return "https://" + cfg.endpoints.soap_namespace_host + ".sii.cl/" + std::string(path);
  }

  HttpResponse soap_call(const std::string& path, std::string_view op,
                         const std::vector<std::pair<std::string, std::string>>& params) {
    auto r = request(cfg.endpoints.soap_base + "/" + path);
    r.body = rpc_envelope(op, soap_ns(path), params);
    r.headers = {"Content-Type: text/xml; charset=utf-8", "SOAPAction: \"\""};
    return perform(r);
  }

  static Respuesta soap_respuesta(const HttpResponse& resp, const char* what) {
    if (resp.status >= 500) {
      if (auto fault = soap_fault_string(resp.body))
        throw SiiTransportError("sii.soap_fault", std::string(what) + ": SOAP Fault: " + *fault, true);
    }
    check_http(resp, what);
    return parse_respuesta(soap_return_text(resp.body));
  }

  static std::string auth_result(const Respuesta& r, const char* what) {
    std::string estado = r.hdr("ESTADO");
    std::string token = r.first("TOKEN");
    if (estado == "00" && !token.empty()) return token;
    std::string msg = std::string(what) + " ESTADO " + estado + ": " + r.hdr("GLOSA");
    // A late or reused seed is cured by a fresh seed: retryable like a transport failure.
    if (estado == "08") throw SiiTransportError("sii.auth.seed_expired", msg, false);
    if (estado == "00") throw SiiMalformedAnswer("sii.auth.no_token", msg + " (no TOKEN)");
    throw SiiAuthError("sii.auth." + (estado.empty() ? std::string("unknown") : estado), msg);
  }

  std::string fetch_soap_token() {
    return with_retry("auth", [&] {
      Respuesta seed = soap_respuesta(soap_call("DTEWS/CrSeed.jws", "getSeed", {}), "getSeed");
      std::string s = seed.first("SEMILLA");
      if (seed.hdr("ESTADO") != "00" || s.empty())
        throw SiiTransportError("sii.auth.seed", "getSeed ESTADO " + seed.hdr("ESTADO"), false);
      std::string signed_xml = sign_seed(s, *cert);
      Respuesta tok = soap_respuesta(
          soap_call("DTEWS/GetTokenFromSeed.jws", "getToken", {{"pszXml", signed_xml}}), "getToken");
      return auth_result(tok, "getToken");
    });
  }

  std::string fetch_boleta_token() {
    return with_retry("boleta_auth", [&] {
      auto r = request(cfg.endpoints.boleta_api_base + "/recursos/v1/boleta.electronica.semilla");
      r.method = "GET";
      r.headers = {"Accept: application/xml"};
      r.user_agent = cfg.boleta_user_agent;
      auto resp = perform(r);
      check_http(resp, "boleta semilla");
      Respuesta seed = parse_respuesta(resp.body);
      std::string s = seed.first("SEMILLA");
      if (seed.hdr("ESTADO") != "00" || s.empty())
        throw SiiTransportError("sii.auth.seed", "boleta semilla ESTADO " + seed.hdr("ESTADO"), false);
      auto t = request(cfg.endpoints.boleta_api_base + "/recursos/v1/boleta.electronica.token");
      t.body = sign_seed(s, *cert);
      t.headers = {"Content-Type: application/xml", "Accept: application/xml"};
      t.user_agent = cfg.boleta_user_agent;
      auto tresp = perform(t);
      check_http(tresp, "boleta token");
      return auth_result(parse_respuesta(tresp.body), "boleta token");
    });
  }

  // ------------------------------------------------------------------ uploads

  UploadAnswer post_dte_upload(const UploadRequest& req, const std::string& company,
                               const std::string& tok) {
    auto [sb, sd] = split_rut(signer_rut);
    auto [cb, cd] = split_rut(company);
    auto r = request(cfg.endpoints.upload_base + "/cgi_dte/UPL/DTEUpload");
    r.user_agent = cfg.upload_user_agent;
    r.fresh_connection = true;
    r.headers = {"Cookie: TOKEN=" + tok, "Accept: */*"};
    r.parts = {MimePart{"rutSender", sb, "", ""}, MimePart{"dvSender", sd, "", ""},
               MimePart{"rutCompany", cb, "", ""}, MimePart{"dvCompany", cd, "", ""},
               MimePart{"archivo", req.envelope, req.filename, "text/xml"}};
    auto resp = perform(r);
    check_http(resp, "DTEUpload");
    UploadAnswer a = parse_upload_answer(resp.body);
    check_upload_status(a);
    return a;
  }

  nlohmann::json post_boleta_envio(const UploadRequest& req, const std::string& company,
                                   const std::string& tok) {
    auto [sb, sd] = split_rut(signer_rut);
    auto [cb, cd] = split_rut(company);
    auto r = request(cfg.endpoints.boleta_envio_base + "/recursos/v1/boleta.electronica.envio");
    r.user_agent = cfg.boleta_user_agent;
    r.fresh_connection = true;
    r.headers = {"Cookie: TOKEN=" + tok, "Accept: application/json"};
    r.parts = {MimePart{"rutSender", sb, "", ""}, MimePart{"dvSender", sd, "", ""},
               MimePart{"rutCompany", cb, "", ""}, MimePart{"dvCompany", cd, "", ""},
               MimePart{"archivo", req.envelope, req.filename, "text/xml"}};
    auto resp = perform(r);
    if (resp.status == 500 && contains_ci(resp.body, "Acceso Denegado"))
      throw SiiRejected("sii.boleta.access_denied",
                        "boleta envío refused: 'Acceso Denegado' (envío posted to the API host?)", "500");
    check_http(resp, "boleta envío");
    try {
      auto j = nlohmann::json::parse(lenient_utf8(resp.body));
      if (!j.is_object() || !j.contains("estado") || !j["estado"].is_string())
        throw SiiMalformedAnswer("sii.no_estado", "boleta envío answer without 'estado'");
      return j;
    } catch (const nlohmann::json::exception& e) {
      throw SiiTransportError("sii.garbled_answer", std::string("unparsable boleta envío answer: ") + e.what());
    }
  }

  // After an unclear outcome: does SII already have the documents of this envelope?
  std::optional<UploadResult> probe(const UploadRequest& req, bool boleta_rest) {
    std::vector<DocumentQuery> docs;
    try {
      docs = documents_of_envelope(req.envelope);
    } catch (const DteError&) {
      return std::nullopt;
    }
    for (const auto& q : docs) {
      try {
        DocumentStatus st = boleta_rest ? boleta_doc_status(q) : doc_status(q, false);
        if (st.state != DocumentState::kNotReceived) {
          UploadResult r;
          r.duplicate = true;
          r.verified = true;
          r.status = 99;
          r.family = boleta_rest ? "boleta" : "dte";
          return r;
        }
      } catch (const SiiError&) {
        return std::nullopt;  // inconclusive: the identical resend is still protected by STATUS 99
      }
    }
    return std::nullopt;
  }

  UploadResult upload(const UploadRequest& req, bool force_dte_upload) {
    std::string company = req.company_rut;
    bool boleta = false;
    {
      auto doc = parse_xml(req.envelope);  // refuse to send what is not XML at all
      xmlNode* root = xmlDocGetRootElement(doc.get());
      boleta = root && std::string_view(reinterpret_cast<const char*>(root->name)) == "EnvioBOLETA";
      if (company.empty()) company = text_at(root, "SetDTE/Caratula/RutEmisor");
      if (company.empty()) throw DteError("sii.no_company", "no company RUT given and no Caratula/RutEmisor");
    }
    bool rest = boleta && !force_dte_upload;
    std::string hash = sha256_hex(req.envelope);
    bool unclear;
    {
      std::lock_guard lock(mu);
      unclear = this->unclear.count(hash) > 0;
    }
    auto settle = [&](UploadResult r, int attempt) {
      std::lock_guard lock(mu);
      this->unclear.erase(hash);
      r.attempts = attempt;
      return r;
    };
    std::string endpoint = rest ? "boleta_envio" : "upload";
    int attempts = std::max(1, cfg.retry.max_attempts);
    for (int attempt = 1;; ++attempt) {
      if (unclear)
        if (auto found = probe(req, rest)) return settle(*found, attempt);
      try {
        if (!breaker_allow(endpoint))
          throw SiiTransportError("sii.circuit_open", "circuit open for endpoint '" + endpoint + "'", false);
        throttle();
        UploadResult out;
        try {
          if (rest) {
            auto j = with_token("boleta", [&](const std::string& tok) {
              auto ans = post_boleta_envio(req, company, tok);
              return ans;
            });
            std::string estado = j["estado"].get<std::string>();
            out.family = "boleta";
            out.timestamp = j.contains("fecha_recepcion") && j["fecha_recepcion"].is_string()
                                ? j["fecha_recepcion"].get<std::string>() : "";
            if (estado == "REC") {
              if (j.contains("trackid") && j["trackid"].is_number_integer())
                out.track_id = std::to_string(j["trackid"].get<long long>());
              else if (j.contains("trackid") && j["trackid"].is_string())
                out.track_id = j["trackid"].get<std::string>();
              if (out.track_id.empty())
                throw SiiMalformedAnswer("sii.upload.no_trackid", "boleta envío REC without trackid");
            } else if (estado == "RPT") {
              out.duplicate = true;
              out.status = 99;
            } else {
              std::string glosa = j.contains("glosa") && j["glosa"].is_string() ? j["glosa"].get<std::string>() : "";
              throw SiiRejected("sii.boleta.rejected", "boleta envío estado " + estado + ": " + glosa, estado);
            }
          } else {
            UploadAnswer a = with_token("soap", [&](const std::string& tok) {
              return post_dte_upload(req, company, tok);
            });
            out.family = "dte";
            out.status = a.status;
            out.track_id = a.track_id;
            out.timestamp = a.timestamp;
            out.duplicate = a.status == 99;
          }
        } catch (const SiiTransportError&) {
          breaker_record(endpoint, false);
          throw;
        } catch (...) {
          breaker_record(endpoint, true);
          throw;
        }
        breaker_record(endpoint, true);
        return settle(out, attempt);
      } catch (const SiiTransportError& e) {
        if (e.maybe_delivered()) {
          unclear = true;
          std::lock_guard lock(mu);
          this->unclear.insert(hash);
        }
        if (attempt >= attempts) throw;
        pause(attempt + 1);
      }
    }
  }

  // ------------------------------------------------------------------ status

  EnvelopeStatus est_up(std::string_view track_id, std::string_view company,
                        EnvelopeKind kind = EnvelopeKind::kAuto) {
    auto [cb, cd] = split_rut(company);
    std::string tid(track_id);
    return with_retry("estup", [&] {
      return with_token("soap", [&](const std::string& tok) {
        auto resp = soap_call("DTEWS/QueryEstUp.jws", "getEstUp",
                              {{"RutCompania", cb}, {"DvCompania", cd}, {"TrackId", tid}, {"Token", tok}});
        EnvelopeStatus s = interpret_est_up(soap_respuesta(resp, "QueryEstUp"), kind);
        if (s.track_id.empty()) s.track_id = tid;
        return s;
      });
    });
  }

  EnvelopeStatus boleta_envelope_status(std::string_view track_id, std::string_view company) {
    auto [cb, cd] = split_rut(company);
    std::string tid(track_id);
    return with_retry("boleta_status", [&] {
      return with_token("boleta", [&](const std::string& tok) {
        auto r = request(cfg.endpoints.boleta_api_base + "/recursos/v1/boleta.electronica.envio/" + cb +
                         "-" + cd + "-" + tid);
        r.method = "GET";
        r.user_agent = cfg.boleta_user_agent;
        r.headers = {"Cookie: TOKEN=" + tok, "Accept: application/json"};
        auto resp = perform(r);
        if (resp.status == 404)
          throw SiiRejected("sii.status.unknown_trackid", "boleta envelope " + tid + " not found", "404");
        check_http(resp, "boleta envelope status");
        EnvelopeStatus s = interpret_boleta_status(resp.body);
        if (s.track_id.empty()) s.track_id = tid;
        return s;
      });
    });
  }

  static std::string ddmmyyyy(std::string_view iso, char sep) {
    if (iso.size() != 10 || iso[4] != '-' || iso[7] != '-')
      throw DteError("sii.bad_date", "date must be YYYY-MM-DD: '" + std::string(iso) + "'");
    std::string s;
    s += iso.substr(8, 2);
    if (sep) s += sep;
    s += iso.substr(5, 2);
    if (sep) s += sep;
    s += iso.substr(0, 4);
    return s;
  }

  DocumentStatus doc_status(const DocumentQuery& q, bool advanced) {
    auto [ib, id] = split_rut(q.issuer_rut);
    auto [rb, rd] = split_rut(q.receiver_rut);
    auto [sb, sd] = split_rut(signer_rut);
    std::string fecha = ddmmyyyy(q.date, 0);
    std::string path = advanced ? "DTEWS/services/QueryEstDteAv" : "DTEWS/QueryEstDte.jws";
    std::string op = advanced ? "getEstDteAv" : "getEstDte";
    return with_retry("estdte", [&] {
      return with_token("soap", [&](const std::string& tok) {
        std::vector<std::pair<std::string, std::string>> params;
        if (advanced) {
          params = {{"RutEmpresa", ib}, {"DvEmpresa", id}, {"RutReceptor", rb}, {"DvReceptor", rd},
                    {"TipoDte", std::to_string(q.doc_type)}, {"FolioDte", std::to_string(q.folio)},
                    {"FechaEmisionDte", fecha}, {"MontoDte", std::to_string(q.amount)},
                    {"FirmaDte", q.signature_value}, {"Token", tok}};
        } else {
          params = {{"RutConsultante", sb}, {"DvConsultante", sd}, {"RutCompania", ib}, {"DvCompania", id},
                    {"RutReceptor", rb}, {"DvReceptor", rd}, {"TipoDte", std::to_string(q.doc_type)},
                    {"FolioDte", std::to_string(q.folio)}, {"FechaEmisionDte", fecha},
                    {"MontoDte", std::to_string(q.amount)}, {"Token", tok}};
        }
        Respuesta r = soap_respuesta(soap_call(path, op, params), advanced ? "QueryEstDteAv" : "QueryEstDte");
        std::string estado = r.hdr("ESTADO");
        if (estado.empty()) throw SiiMalformedAnswer("sii.no_estado", "document status without ESTADO");
        std::string glosa = r.hdr("GLOSA_ERR").empty() ? r.hdr("GLOSA_ESTADO") : r.hdr("GLOSA_ERR");
        if (glosa.empty()) glosa = r.hdr("GLOSA");
        return interpret_doc_state(estado, r.hdr("ERR_CODE"), glosa);
      });
    });
  }

  DocumentStatus boleta_doc_status(const DocumentQuery& q) {
    auto [ib, id] = split_rut(q.issuer_rut);
    auto [rb, rd] = split_rut(q.receiver_rut);
    std::string url = cfg.endpoints.boleta_api_base + "/recursos/v1/boleta.electronica/" + ib + "-" + id +
                      "-" + std::to_string(q.doc_type) + "-" + std::to_string(q.folio) +
                      "/estado?rut_receptor=" + rb + "&dv_receptor=" + rd +
                      "&monto=" + std::to_string(q.amount) + "&fechaEmision=" + ddmmyyyy(q.date, '-');
    return with_retry("boleta_status", [&] {
      return with_token("boleta", [&](const std::string& tok) {
        auto r = request(url);
        r.method = "GET";
        r.user_agent = cfg.boleta_user_agent;
        r.headers = {"Cookie: TOKEN=" + tok, "Accept: application/json"};
        auto resp = perform(r);
        check_http(resp, "boleta document status");
        nlohmann::json j;
        try {
          j = nlohmann::json::parse(lenient_utf8(resp.body));
        } catch (const nlohmann::json::exception& e) {
          throw SiiTransportError("sii.garbled_answer", std::string("unparsable boleta document status: ") + e.what());
        }
        if (!j.is_object() || !j.contains("codigo") || !j["codigo"].is_string())
          throw SiiMalformedAnswer("sii.no_estado", "boleta document status without 'codigo'");
        std::string desc = j.contains("descripcion") && j["descripcion"].is_string()
                               ? j["descripcion"].get<std::string>() : "";
        return interpret_doc_state(j["codigo"].get<std::string>(), "", desc);
      });
    });
  }

  // ------------------------------------------------------------------ claims

  HttpResponse reclamo_call(std::string_view op, std::string_view issuer, int type, long long folio,
                            std::string_view action, const std::string& tok) {
    auto [ib, id] = split_rut(issuer);
    std::vector<std::pair<std::string, std::string>> params = {
        {"rutEmisor", ib}, {"dvEmisor", id}, {"tipoDoc", std::to_string(type)}, {"folio", std::to_string(folio)}};
    if (!action.empty()) params.emplace_back("accionDoc", std::string(action));
    auto r = request(cfg.endpoints.claims_url);
    r.body = literal_envelope(op, params);
    r.headers = {"Content-Type: text/xml; charset=utf-8", "SOAPAction: \"\"", "Cookie: TOKEN=" + tok};
    auto resp = perform(r);
    if (auto fault = soap_fault_string(resp.body)) {
      if (contains_ci(*fault, "TOKEN")) throw SiiAuthError("sii.token_expired", "RegistroReclamoDTE: " + *fault);
      throw SiiTransportError("sii.soap_fault", "RegistroReclamoDTE SOAP Fault: " + *fault, true);
    }
    check_http(resp, "RegistroReclamoDTE");
    return resp;
  }

  template <typename Parse>
  auto reclamo(std::string_view op, std::string_view issuer, int type, long long folio,
               std::string_view action, Parse parse) {
    return with_retry("claims", [&] {
      return with_token("soap", [&](const std::string& tok) {
        return parse(reclamo_call(op, issuer, type, folio, action, tok).body);
      });
    });
  }
};

// ------------------------------------------------------------------------------------ Client

Client::Client(ClientConfig config, std::shared_ptr<const Certificate> cert)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(cert))) {}
Client::~Client() = default;

const ClientConfig& Client::config() const noexcept { return impl_->cfg; }
std::string Client::signer_rut() const { return impl_->signer_rut; }

std::string Client::token(std::string_view family, bool force_new) {
  if (family != "soap" && family != "boleta")
    throw DteError("sii.bad_family", "token family must be 'soap' or 'boleta'");
  return impl_->token(family, force_new);
}

void Client::invalidate_token(std::string_view family) { impl_->invalidate(family, ""); }

UploadResult Client::upload(const UploadRequest& req, bool force_dte_upload) {
  return impl_->upload(req, force_dte_upload);
}

EnvelopeStatus Client::envelope_status(std::string_view track_id, std::string_view company_rut, bool boleta) {
  return boleta ? impl_->boleta_envelope_status(track_id, company_rut) : impl_->est_up(track_id, company_rut);
}

EnvelopeStatus Client::envelope_status(std::string_view track_id, std::string_view company_rut, bool boleta,
                                       EnvelopeKind kind) {
  return boleta ? impl_->boleta_envelope_status(track_id, company_rut)
                : impl_->est_up(track_id, company_rut, kind);
}

MailResendResult Client::resend_mail(std::string_view track_id, std::string_view company_rut) {
  Impl& im = *impl_;
  auto [cb, cd] = split_rut(company_rut);
  std::string tid(track_id);
  if (tid.empty() || tid.find_first_not_of("0123456789") != std::string::npos)
    throw DteError("sii.bad_trackid", "track id must be digits, not '" + tid + "'");
  return im.with_retry("correo", [&] {
    return im.with_token("soap", [&](const std::string& tok) {
      // Parts in the WSDL's parameterOrder: Token, RutEmpresa, DvEmpresa, TrackId.
      auto resp = im.soap_call("DTEWS/services/wsDTECorreo", "reenvioCorreo",
                               {{"Token", tok}, {"RutEmpresa", cb}, {"DvEmpresa", cd}, {"TrackId", tid}});
      return interpret_mail_resend(Impl::soap_respuesta(resp, "wsDTECorreo"));
    });
  });
}

DocumentStatus Client::document_status(const DocumentQuery& q, bool advanced) {
  return impl_->doc_status(q, advanced);
}

DocumentStatus Client::boleta_document_status(const DocumentQuery& q) { return impl_->boleta_doc_status(q); }

ClaimResult Client::claim(std::string_view issuer_rut, int doc_type, long long folio, std::string_view action) {
  static const std::set<std::string, std::less<>> actions = {"ACD", "RCD", "ERM", "RFP", "RFT"};
  if (!actions.count(action))
    throw DteError("sii.claims.bad_action", "action must be one of ACD RCD ERM RFP RFT, not '" +
                                                std::string(action) + "'");
  return impl_->reclamo("ingresarAceptacionReclamoDoc", issuer_rut, doc_type, folio, action,
                        [](const std::string& b) { return parse_claim_answer(b); });
}

EventsResult Client::claim_events(std::string_view issuer_rut, int doc_type, long long folio) {
  return impl_->reclamo("listarEventosHistDoc", issuer_rut, doc_type, folio, "",
                        [](const std::string& b) { return parse_events_answer(b); });
}

ClaimResult Client::transferable(std::string_view issuer_rut, int doc_type, long long folio) {
  return impl_->reclamo("consultarDocDteCedible", issuer_rut, doc_type, folio, "",
                        [](const std::string& b) { return parse_claim_answer(b); });
}

std::string Client::reception_date(std::string_view issuer_rut, int doc_type, long long folio) {
  return impl_->reclamo("consultarFechaRecepcionSii", issuer_rut, doc_type, folio, "",
                        [](const std::string& b) { return parse_reception_date_answer(b); });
}

namespace {

template <typename T, typename F>
BatchItem<T> capture(F&& fn) {
  BatchItem<T> item;
  try {
    item.value = fn();
  } catch (const SiiTransportError& e) {
    item.error_kind = "transport";
    item.error_code = e.code();
    item.error_message = e.what();
  } catch (const SiiAuthError& e) {
    item.error_kind = "auth";
    item.error_code = e.code();
    item.error_message = e.what();
  } catch (const SiiRejected& e) {
    item.error_kind = "rejected";
    item.error_code = e.code();
    item.error_message = e.what();
    item.sii_code = e.sii_code();
  } catch (const SiiMalformedAnswer& e) {
    item.error_kind = "malformed";
    item.error_code = e.code();
    item.error_message = e.what();
  } catch (const DteError& e) {
    item.error_kind = "error";
    item.error_code = e.code();
    item.error_message = e.what();
  } catch (const std::exception& e) {
    item.error_kind = "error";
    item.error_code = "sii.internal";
    item.error_message = e.what();
  }
  return item;
}

}  // namespace

std::vector<BatchItem<UploadResult>> Client::upload_many(const std::vector<UploadRequest>& reqs) {
  return parallel_map(
      reqs.size(), [&](std::size_t i) { return capture<UploadResult>([&] { return upload(reqs[i]); }); },
      impl_->cfg.batch_threads);
}

std::vector<BatchItem<EnvelopeStatus>> Client::status_many(
    const std::vector<std::pair<std::string, std::string>>& items, bool boleta) {
  return parallel_map(
      items.size(),
      [&](std::size_t i) {
        return capture<EnvelopeStatus>([&] { return envelope_status(items[i].first, items[i].second, boleta); });
      },
      impl_->cfg.batch_threads);
}

std::map<std::string, std::string> Client::breaker_states() {
  std::map<std::string, std::string> out;
  std::lock_guard lock(impl_->mu);
  double now = mono_now();
  for (auto& [name, b] : impl_->breakers)
    out[name] = to_string(impl_->cfg.shared ? impl_->cfg.shared->breaker_state(name, impl_->cfg.breaker)
                                            : b->state(now));
  return out;
}

std::string Client::post_with_token(const std::string& endpoint, const std::string& url,
                                    const std::string& content_type,
                                    const std::function<std::string(const std::string&)>& body_for,
                                    const std::function<void(long, std::string_view)>& judge) {
  Impl& im = *impl_;
  return im.with_retry(endpoint, [&] {
    return im.with_token("soap", [&](const std::string& tok) {
      auto r = im.request(url);
      r.user_agent = im.cfg.upload_user_agent;
      r.headers = {"Content-Type: " + content_type, "Accept: application/json, text/plain, */*",
                   "Cookie: TOKEN=" + tok};
      r.body = body_for(tok);
      HttpResponse resp = im.perform(r);
      judge(resp.status, resp.body);
      return resp.body;
    });
  });
}

}  // namespace dte::sii
