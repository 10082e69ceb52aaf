// Our IMAP client against a real Dovecot started by the test on loopback, with a temporary
// config, a passwd-file user and a maildir in a temporary folder (no system service).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "dte/envelope.hpp"
#include "dte/imap.hpp"
#include "dte/pipeline.hpp"
#include "dte/reception.hpp"
#include "signing_material.hpp"

using namespace dte;
using namespace dte::test;

namespace {

const char* dovecot_binary() {
  for (const char* p : {"/usr/sbin/dovecot", "/usr/local/sbin/dovecot"})
    if (::access(p, X_OK) == 0) return p;
  return nullptr;
}

int free_port() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  int port = ntohs(a.sin_port);
  ::close(s);
  return port;
}

bool port_open(int port) {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(s);
  return ok;
}

class Dovecot {
 public:
  Dovecot() {
    const char* bin = dovecot_binary();
    if (!bin) {
      skip_ = "dovecot is not installed (Debian: dovecot-imapd; scripts/setup installs it)";
      return;
    }
    // The system's temporary folder ($TMPDIR, else /tmp), not a fixed path.
    std::string tmpl = (fs::temp_directory_path() / "dte_dovecot_XXXXXX").string();
    dir_ = ::mkdtemp(tmpl.data());
    // Dovecot's auth and login processes run as other users: they must be able to read.
    fs::permissions(dir_, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                              fs::perms::others_read | fs::perms::others_exec);
    fs::create_directories(dir_ / "run");
    fs::create_directories(dir_ / "mail");
    port_ = free_port();
    // Dovecot refuses mail access as root: as root the mail user is nobody, else ourselves.
    uid_t uid = ::getuid();
    gid_t gid = ::getgid();
    std::string extra;
    if (uid == 0) {
      uid = 65534;
      gid = 65534;
      if (::chown((dir_ / "mail").c_str(), uid, gid) != 0) skip_ = "cannot chown the maildir";
    } else {
      const passwd* pw = ::getpwuid(uid);
      std::string me = pw ? pw->pw_name : "nobody";
      extra = "default_login_user = " + me + "\ndefault_internal_user = " + me + "\n";
    }
    std::ofstream(dir_ / "passwd") << "recepcion:{PLAIN}secreto::::\n";
    std::ofstream(dir_ / "dovecot.conf")
        << "base_dir = " << (dir_ / "run").string() << "\nstate_dir = " << (dir_ / "run").string()
        << "\nlog_path = " << (dir_ / "dovecot.log").string()
        << "\nprotocols = imap\nlisten = 127.0.0.1\nssl = no\ndisable_plaintext_auth = no\n"
           "auth_mechanisms = plain login\nfirst_valid_uid = 1\n"
        << extra << "mail_location = maildir:" << (dir_ / "mail").string() << "/%u\n"
        << "passdb {\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u "
        << (dir_ / "passwd").string() << "\n}\nuserdb {\n  driver = static\n  args = uid=" << uid
        << " gid=" << gid << " home=" << (dir_ / "mail").string() << "/%u\n}\n"
        << "service imap-login {\n  chroot =\n  inet_listener imap {\n    address = 127.0.0.1\n    port = "
        << port_ << "\n  }\n  inet_listener imaps {\n    port = 0\n  }\n}\nservice anvil {\n  chroot =\n}\n";
    pid_ = ::fork();
    if (pid_ == 0) {
      std::string conf = (dir_ / "dovecot.conf").string();
      ::execl(bin, "dovecot", "-F", "-c", conf.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    for (int i = 0; i < 100 && !port_open(port_); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (!port_open(port_)) skip_ = "dovecot did not start: " + read_file(dir_ / "dovecot.log");
  }
  ~Dovecot() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }
  const std::string& skip() const { return skip_; }
  std::string url() const { return "imap://127.0.0.1:" + std::to_string(port_) + "/INBOX"; }
  imap::ImapConfig config() const {
    imap::ImapConfig c;
    c.url = url();
    c.user = "recepcion";
    c.password = "secreto";
    c.timeout_s = 30;
    return c;
  }

 private:
  fs::path dir_;
  int port_ = 0;
  pid_t pid_ = -1;
  std::string skip_;
};

std::string supplier_mail(long long folio) {
  SignOptions o;
  std::string dte = sign_document(example_input(33, folio), caf_for(33), cert(), o).xml;
  Caratula c;
  c.rut_emisor = kIssuer;
  c.rut_receptor = "77123456-9";
  c.fch_resol = "2014-08-22";
  std::string env = build_envelope({dte}, c, cert(), false);
  return mime::build_message("dte@proveedor.cl", "recepcion@empresa.cl", "Envio DTE folio " + std::to_string(folio),
                             "Adjunto", {{"ENVIO_DTE_" + std::to_string(folio) + ".xml", "application/xml", env}});
}

}  // namespace

TEST(ReceptionImap, FetchesNewMessagesByUidFromDovecot) {
  Dovecot server;
  if (!server.skip().empty()) GTEST_SKIP() << server.skip();
  imap::Client client(server.config());
  imap::MailboxState s0 = client.status();
  EXPECT_EQ(s0.messages, 0u);
  EXPECT_GT(s0.uid_validity, 0u);
  EXPECT_TRUE(client.uids_above(0).empty());

  std::vector<std::string> sent{supplier_mail(71), supplier_mail(72),
                                "From: x@y.cl\r\nSubject: basura\r\n\r\nsin adjuntos\r\n"};
  for (const auto& m : sent) client.append(m);
  std::vector<std::uint64_t> uids = client.uids_above(0);
  ASSERT_EQ(uids.size(), 3u);
  // "UID n:*" answers the last message even when n is above it: filtered out.
  EXPECT_TRUE(client.uids_above(uids.back()).empty());
  EXPECT_EQ(client.uids_above(uids[0]).size(), 2u);

  reception::ReceptionOptions opts;
  opts.company_rut = "77123456-9";
  opts.keyring = &keyring();
  opts.schemas = schemas();
  std::uint64_t remembered = 0;
  int verified = 0, quarantined = 0;
  for (std::uint64_t uid : client.uids_above(remembered)) {
    std::string raw = client.fetch(uid);
    reception::MessageOutcome out = reception::process_message(raw, opts);
    if (out.quarantined) ++quarantined;
    else ++verified;
    remembered = uid;  // the caller stores first, then advances
  }
  // Without SII's XSDs every envelope fails its schema check (never skipped) and is quarantined.
  EXPECT_EQ(quarantined, schemas() ? 1 : 3);
  EXPECT_EQ(verified, schemas() ? 2 : 0);
  EXPECT_EQ(client.status().uid_validity, s0.uid_validity);

  imap::ImapConfig wrong = server.config();
  wrong.password = "mala";
  imap::Client bad(wrong);
  try {
    bad.status();
    FAIL() << "login with a wrong password succeeded";
  } catch (const imap::ImapError& e) {
    EXPECT_EQ(e.code(), "imap.auth") << e.what();
  }
  EXPECT_THROW(imap::Client(imap::ImapConfig{"http://x/", "", "", true, "", 1, 1, 1}), imap::ImapError);
}
