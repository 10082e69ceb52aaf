// libcurl plumbing of the SII client.
#include <mutex>

#include "dte/sii_client.hpp"
#include "sii_internal.hpp"

namespace dte::sii::detail {

namespace {

constexpr std::size_t kMaxAnswerBytes = 64 * 1024 * 1024;

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Sink {
  std::string* out;
  bool overflow = false;
};

// C callback: must never throw.
size_t write_cb(char* data, size_t size, size_t n, void* user) noexcept {
  auto* sink = static_cast<Sink*>(user);
  size_t bytes = size * n;
  if (sink->out->size() + bytes > kMaxAnswerBytes) {
    sink->overflow = true;
    return 0;
  }
  try {
    sink->out->append(data, bytes);
  } catch (...) {
    return 0;
  }
  return bytes;
}

void check(CURLcode rc, const char* what) {
  if (rc != CURLE_OK)
    throw SiiTransportError("sii.curl_setup", std::string(what) + ": " + curl_easy_strerror(rc), false);
}

}  // namespace

HttpShare::HttpShare() {
  global_init();
  share_.reset(curl_share_init());
  if (!share_) throw SiiTransportError("sii.curl_setup", "curl_share_init failed", false);
  curl_share_setopt(share_.get(), CURLSHOPT_LOCKFUNC, &HttpShare::lock);
  curl_share_setopt(share_.get(), CURLSHOPT_UNLOCKFUNC, &HttpShare::unlock);
  curl_share_setopt(share_.get(), CURLSHOPT_USERDATA, this);
  curl_share_setopt(share_.get(), CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  curl_share_setopt(share_.get(), CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  curl_share_setopt(share_.get(), CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
}

void HttpShare::lock(CURL*, curl_lock_data data, curl_lock_access, void* self) noexcept {
  auto* s = static_cast<HttpShare*>(self);
  if (data >= 0 && data < CURL_LOCK_DATA_LAST) s->locks_[data].lock();
}

void HttpShare::unlock(CURL*, curl_lock_data data, void* self) noexcept {
  auto* s = static_cast<HttpShare*>(self);
  if (data >= 0 && data < CURL_LOCK_DATA_LAST) s->locks_[data].unlock();
}

HttpResponse perform(const HttpShare& share, const HttpRequest& req) {
  global_init();
  CurlPtr curl(curl_easy_init());
  if (!curl) throw SiiTransportError("sii.curl_setup", "curl_easy_init failed", false);
  CURL* h = curl.get();
  HttpResponse resp;
  Sink sink{&resp.body};
  check(curl_easy_setopt(h, CURLOPT_SHARE, share.get()), "share");
  check(curl_easy_setopt(h, CURLOPT_URL, req.url.c_str()), "url");
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM-based DNS timeouts
  curl_easy_setopt(h, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
  curl_easy_setopt(h, CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_2);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, req.verify_tls ? 1L : 0L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, req.verify_tls ? 2L : 0L);
  if (!req.ca_file.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, req.ca_file.c_str());
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(req.connect_timeout_s * 1000));
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(req.timeout_s * 1000));
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &write_cb);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  if (req.fresh_connection) curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, 1L);
  if (!req.user_agent.empty()) curl_easy_setopt(h, CURLOPT_USERAGENT, req.user_agent.c_str());

  curl_slist* raw = nullptr;
  CurlSlistPtr headers;
  auto add = [&](const std::string& line) {
    curl_slist* next = curl_slist_append(raw, line.c_str());
    if (!next) throw SiiTransportError("sii.curl_setup", "curl_slist_append failed", false);
    raw = next;
    headers.release();
    headers.reset(raw);
  };
  add("Expect:");  // no 100-continue round trip; SII's CGI never asked for it
  for (const auto& line : req.headers) add(line);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());

  CurlMimePtr mime;
  if (!req.parts.empty()) {
    mime.reset(curl_mime_init(h));
    if (!mime) throw SiiTransportError("sii.curl_setup", "curl_mime_init failed", false);
    for (const auto& p : req.parts) {
      curl_mimepart* part = curl_mime_addpart(mime.get());
      curl_mime_name(part, p.name.c_str());
      curl_mime_data(part, p.data.data(), p.data.size());  // known size: Content-Length, no chunks
      if (!p.filename.empty()) curl_mime_filename(part, p.filename.c_str());
      if (!p.content_type.empty()) curl_mime_type(part, p.content_type.c_str());
    }
    curl_easy_setopt(h, CURLOPT_MIMEPOST, mime.get());
  } else if (req.method == "POST") {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, req.body.data());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
  } else {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  }

  CURLcode rc = curl_easy_perform(h);
  long request_size = 0;
  curl_easy_getinfo(h, CURLINFO_REQUEST_SIZE, &request_size);
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp.status);
  char* ct = nullptr;
  if (curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct) resp.content_type = ct;
  if (rc == CURLE_OK) return resp;

  std::string what = std::string(curl_easy_strerror(rc)) + " (" + req.url + ")";
  bool sent = request_size > 0;
  switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
      throw SiiTransportError("sii.connect", "cannot connect: " + what, false);
    case CURLE_OPERATION_TIMEDOUT:
      throw SiiTransportError("sii.timeout", "timeout: " + what, sent);
    case CURLE_WRITE_ERROR:
      if (sink.overflow) throw SiiTransportError("sii.answer_too_large", "answer too large: " + what, true);
      [[fallthrough]];
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
      throw SiiTransportError("sii.connection_dropped", "connection dropped: " + what, sent);
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
      throw SiiTransportError("sii.tls", "TLS: " + what, false);
    default:
      throw SiiTransportError("sii.network", what, sent);
  }
}

}  // namespace dte::sii::detail
