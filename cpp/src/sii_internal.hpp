// Private plumbing of the SII client: one libcurl request with RAII handles, and the share of
// connections, DNS and TLS sessions that every thread of a client uses.
#pragma once
#include <curl/curl.h>

#include <array>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "dte/handles.hpp"

namespace dte::sii::detail {

using CurlPtr = std::unique_ptr<CURL, CDeleter<curl_easy_cleanup>>;
using CurlMimePtr = std::unique_ptr<curl_mime, CDeleter<curl_mime_free>>;
using CurlSlistPtr = std::unique_ptr<curl_slist, CDeleter<curl_slist_free_all>>;
inline void curl_share_free(CURLSH* s) noexcept { curl_share_cleanup(s); }
using CurlSharePtr = std::unique_ptr<CURLSH, CDeleter<curl_share_free>>;

struct MimePart {
  std::string name, data, filename, content_type;
};

struct HttpRequest {
  std::string method = "POST";
  std::string url;
  std::vector<std::string> headers;
  std::string body;             // used when parts is empty
  std::vector<MimePart> parts;  // multipart/form-data, sizes known (never chunked)
  std::string user_agent;
  double connect_timeout_s = 10;
  double timeout_s = 60;
  bool verify_tls = true;
  std::string ca_file;
  // A new connection, never a kept-alive one: libcurl silently re-sends a request once when a
  // reused connection turns out dead, which must not happen to an upload.
  bool fresh_connection = false;
};

struct HttpResponse {
  long status = 0;
  std::string body;
  std::string content_type;
};

// Connections, DNS cache and TLS sessions shared by every request of one client (any thread).
class HttpShare {
 public:
  HttpShare();
  CURLSH* get() const noexcept { return share_.get(); }

 private:
  static void lock(CURL*, curl_lock_data data, curl_lock_access, void* self) noexcept;
  static void unlock(CURL*, curl_lock_data data, void* self) noexcept;
  std::array<std::mutex, CURL_LOCK_DATA_LAST> locks_;
  CurlSharePtr share_;
};

// One request. Network-level failures throw SiiTransportError (maybe_delivered false when nothing
// was sent); any HTTP status comes back as a response for the caller to judge.
HttpResponse perform(const HttpShare& share, const HttpRequest& req);

}  // namespace dte::sii::detail
