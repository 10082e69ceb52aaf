// The exchange mailbox over IMAP (libcurl; imaps:// in production, imap:// for local tests).
// Progress is a (UIDVALIDITY, last UID) pair that the CALLER keeps: list what is above it, fetch
// each message, store it safely, and only then advance the remembered UID. Nothing here marks,
// moves or deletes mail, so a crash between fetch and store loses nothing.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dte/errors.hpp"

namespace dte::imap {

// Connection, login or protocol failures. code(): "imap.connect", "imap.auth", "imap.tls",
// "imap.protocol", "imap.timeout", "imap.too_large", "imap.bad_url".
class ImapError : public DteError {
 public:
  using DteError::DteError;
};

struct ImapConfig {
  std::string url;       // "imaps://mail.example.cl/INBOX" (folder in the path; default INBOX)
  std::string user;
  std::string password;
  bool verify_tls = true;
  std::string ca_file;   // extra CA bundle, "" = system
  double connect_timeout_s = 15;
  double timeout_s = 120;
  std::size_t max_message_bytes = 64 * 1024 * 1024;  // larger messages: ImapError imap.too_large
};

struct MailboxState {
  std::uint64_t uid_validity = 0;  // when it changes, every remembered UID is void
  std::uint64_t uid_next = 0;
  std::uint64_t messages = 0;
};

// One connection (libcurl reuses it between calls). Not thread-safe: one client per thread.
class Client {
 public:
  explicit Client(ImapConfig config);
  ~Client();
  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const ImapConfig& config() const noexcept;
  const std::string& folder() const noexcept;

  // STATUS of the folder.
  MailboxState status();
  // UIDs strictly above `above_uid`, ascending (UID SEARCH UID n+1:*; the server's answer for
  // "*" below n is filtered out).
  std::vector<std::uint64_t> uids_above(std::uint64_t above_uid);
  // The raw RFC 5322 bytes of one message (UID FETCH BODY[]; the server may set \Seen, which
  // nothing here relies on: progress is the caller's remembered UID, not a flag).
  // ImapError "imap.no_message" when the UID does not exist.
  std::string fetch(std::uint64_t uid);
  // APPENDs a raw message to the folder (tests, and filing a copy of an answer in "Sent").
  void append(std::string_view raw_message);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dte::imap
