#include "dte/imap.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <mutex>
#include <sstream>

#include "dte/handles.hpp"

namespace dte::imap {
namespace {

using CurlPtr = std::unique_ptr<CURL, CDeleter<curl_easy_cleanup>>;

void init_curl() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Sink {
  std::string data;
  std::size_t limit = 0;
  bool overflow = false;
};

size_t write_cb(char* ptr, size_t size, size_t n, void* userdata) noexcept {
  auto* sink = static_cast<Sink*>(userdata);
  const size_t len = size * n;
  if (sink->data.size() + len > sink->limit) {
    sink->overflow = true;
    return 0;  // aborts the transfer: CURLE_WRITE_ERROR
  }
  try {
    sink->data.append(ptr, len);
  } catch (...) {
    return 0;
  }
  return len;
}

struct Source {
  std::string_view data;
  std::size_t pos = 0;
};

size_t read_cb(char* buffer, size_t size, size_t n, void* userdata) noexcept {
  auto* src = static_cast<Source*>(userdata);
  size_t len = std::min(size * n, src->data.size() - src->pos);
  std::copy_n(src->data.data() + src->pos, len, buffer);
  src->pos += len;
  return len;
}

std::string imap_quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::uint64_t number_after(const std::string& text, const std::string& key) {
  auto pos = text.find(key + " ");
  if (pos == std::string::npos) return 0;
  pos += key.size() + 1;
  std::uint64_t v = 0;
  while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos])))
    v = v * 10 + static_cast<std::uint64_t>(text[pos++] - '0');
  return v;
}

}  // namespace

struct Client::Impl {
  ImapConfig config;
  std::string base;    // "imap://host:port/"
  std::string folder;  // "INBOX"
  CurlPtr curl;

  explicit Impl(ImapConfig c) : config(std::move(c)) {
    init_curl();
    const std::string& url = config.url;
    auto scheme_end = url.find("://");
    if (scheme_end == std::string::npos ||
        (url.compare(0, scheme_end, "imap") != 0 && url.compare(0, scheme_end, "imaps") != 0)) {
      throw ImapError("imap.bad_url", "'" + url + "' is not an imap:// or imaps:// URL");
    }
    auto path = url.find('/', scheme_end + 3);
    base = path == std::string::npos ? url + "/" : url.substr(0, path + 1);
    folder = path == std::string::npos ? std::string() : url.substr(path + 1);
    while (!folder.empty() && folder.back() == '/') folder.pop_back();
    if (folder.empty()) folder = "INBOX";
    curl.reset(curl_easy_init());
    if (!curl) throw ImapError("imap.connect", "curl_easy_init failed");
  }

  std::string folder_url() const {
    char* escaped = curl_easy_escape(curl.get(), folder.c_str(), static_cast<int>(folder.size()));
    std::string out = base + (escaped ? escaped : folder);
    curl_free(escaped);
    return out;
  }

  // Every call starts from a clean handle (curl_easy_reset keeps the live connection).
  void prepare(const std::string& url, Sink& sink) {
    CURL* h = curl.get();
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_USERNAME, config.user.c_str());
    curl_easy_setopt(h, CURLOPT_PASSWORD, config.password.c_str());
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(config.connect_timeout_s * 1000));
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(config.timeout_s * 1000));
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, config.verify_tls ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, config.verify_tls ? 2L : 0L);
    if (!config.ca_file.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, config.ca_file.c_str());
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
  }

  void perform(const Sink& sink, const char* what) {
    CURLcode rc = curl_easy_perform(curl.get());
    if (rc == CURLE_OK) return;
    if (sink.overflow) {
      throw ImapError("imap.too_large", std::string(what) + ": larger than " +
                                            std::to_string(sink.limit) + " bytes");
    }
    std::string why = std::string(what) + ": " + curl_easy_strerror(rc);
    switch (rc) {
      case CURLE_LOGIN_DENIED: throw ImapError("imap.auth", why);
      case CURLE_COULDNT_CONNECT:
      case CURLE_COULDNT_RESOLVE_HOST: throw ImapError("imap.connect", why);
      case CURLE_OPERATION_TIMEDOUT: throw ImapError("imap.timeout", why);
      case CURLE_SSL_CONNECT_ERROR:
      case CURLE_PEER_FAILED_VERIFICATION:
      case CURLE_SSL_CACERT_BADFILE:
      case CURLE_USE_SSL_FAILED: throw ImapError("imap.tls", why);
      case CURLE_REMOTE_FILE_NOT_FOUND: throw ImapError("imap.no_folder", why);
      default: throw ImapError("imap.protocol", why);
    }
  }
};

Client::Client(ImapConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {}
Client::~Client() = default;
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;

const ImapConfig& Client::config() const noexcept { return impl_->config; }
const std::string& Client::folder() const noexcept { return impl_->folder; }

MailboxState Client::status() {
  Sink sink;
  sink.limit = 1 << 20;
  impl_->prepare(impl_->base, sink);
  std::string cmd = "STATUS " + imap_quote(impl_->folder) + " (MESSAGES UIDNEXT UIDVALIDITY)";
  curl_easy_setopt(impl_->curl.get(), CURLOPT_CUSTOMREQUEST, cmd.c_str());
  impl_->perform(sink, "IMAP STATUS");
  if (sink.data.find("STATUS") == std::string::npos) {
    throw ImapError("imap.protocol", "IMAP STATUS: no STATUS response for " + impl_->folder);
  }
  MailboxState s;
  s.uid_validity = number_after(sink.data, "UIDVALIDITY");
  s.uid_next = number_after(sink.data, "UIDNEXT");
  s.messages = number_after(sink.data, "MESSAGES");
  return s;
}

std::vector<std::uint64_t> Client::uids_above(std::uint64_t above_uid) {
  Sink sink;
  sink.limit = 64 << 20;
  impl_->prepare(impl_->folder_url(), sink);
  std::string cmd = "UID SEARCH UID " + std::to_string(above_uid + 1) + ":*";
  curl_easy_setopt(impl_->curl.get(), CURLOPT_CUSTOMREQUEST, cmd.c_str());
  impl_->perform(sink, "IMAP UID SEARCH");
  std::vector<std::uint64_t> out;
  std::istringstream lines(sink.data);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("* SEARCH", 0) != 0) continue;
    std::istringstream words(line.substr(8));
    for (std::string w; words >> w;) {
      if (w.empty() || !std::all_of(w.begin(), w.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
        continue;
      std::uint64_t uid = std::stoull(w);
      if (uid > above_uid) out.push_back(uid);
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::string Client::fetch(std::uint64_t uid) {
  Sink sink;
  sink.limit = impl_->config.max_message_bytes;
  impl_->prepare(impl_->folder_url() + "/;UID=" + std::to_string(uid), sink);
  impl_->perform(sink, ("IMAP FETCH UID " + std::to_string(uid)).c_str());
  if (sink.data.empty()) {
    throw ImapError("imap.no_message", "no message with UID " + std::to_string(uid) + " in " +
                                           impl_->folder);
  }
  return std::move(sink.data);
}

void Client::append(std::string_view raw_message) {
  Sink sink;
  sink.limit = 1 << 20;
  impl_->prepare(impl_->folder_url(), sink);
  Source src{raw_message, 0};
  CURL* h = impl_->curl.get();
  curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(h, CURLOPT_READFUNCTION, &read_cb);
  curl_easy_setopt(h, CURLOPT_READDATA, &src);
  curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(raw_message.size()));
  impl_->perform(sink, "IMAP APPEND");
}

}  // namespace dte::imap
