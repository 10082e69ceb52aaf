#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <atomic>
#include <functional>

#include <unistd.h>

#include "dte/caf.hpp"
#include "dte/errors.hpp"
#include "dte/testkit.hpp"
#include "dte/xml.hpp"

using namespace dte;
namespace fs = std::filesystem;

namespace {

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

const fs::path kShared = DTE_SHARED_DIR;

// One "SII" key for the whole suite: RSA keygen is the slow part of these tests.
const testkit::KeyPair& sii_key() {
  static const testkit::KeyPair key = testkit::make_rsa_key(1024);
  return key;
}

testkit::CafSpec spec(int type = 33) {
  testkit::CafSpec s;
  s.issuer_rut = "76192083-9";
  s.issuer_name = "EMPRESA DE PRUEBA ÑUÑOA & CÍA";
  s.doc_type = type;
  s.folio_from = 10;
  s.folio_to = 20;
  s.authorized_on = "2024-08-31";
  s.idk = 100;
  return s;
}

const std::string& caf33() {
  static const std::string caf = testkit::make_caf(spec(), sii_key().private_pem);
  return caf;
}

SiiKeyring test_keyring() {
  SiiKeyring k;
  k.add_pem(100, sii_key().public_pem);
  return k;
}

std::string code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const DteError& e) {
    return e.code();
  }
  return "no exception";
}

std::string replace_between(std::string s, const std::string& open, const std::string& close,
                            const std::string& value) {
  auto a = s.find(open);
  auto b = s.find(close, a);
  return s.replace(a + open.size(), b - a - open.size(), value);
}

}  // namespace

TEST(Caf, GeneratedCafParsesInSiiLayout) {
  const std::string& xml = caf33();
  EXPECT_EQ(xml.rfind("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>", 0), 0u);
  EXPECT_NE(xml.find("-----BEGIN RSA PRIVATE KEY-----"), std::string::npos);
  EXPECT_NE(xml.find("<FRMA algoritmo=\"SHA1withRSA\">"), std::string::npos);
  EXPECT_NE(xml.find("\xD1U\xD1OA"), std::string::npos) << "RS must be ISO-8859-1 bytes";

  Caf caf = Caf::parse(xml);
  const CafInfo& i = caf.info();
  EXPECT_EQ(i.issuer_rut, "76192083-9");
  EXPECT_EQ(i.issuer_name, "EMPRESA DE PRUEBA ÑUÑOA & CÍA");
  EXPECT_EQ(i.doc_type, 33);
  EXPECT_EQ(i.folio_from, 10);
  EXPECT_EQ(i.folio_to, 20);
  EXPECT_EQ(i.authorized_on, "2024-08-31");
  EXPECT_EQ(i.idk, 100);
  EXPECT_EQ(i.expires_on, "2025-02-28");  // six months, clamped to February's end
  EXPECT_TRUE(i.has_private_key);
  EXPECT_EQ(caf.caf_xml().rfind("<CAF version=\"1.0\">", 0), 0u);
  EXPECT_EQ(caf.flattened_da().rfind("<DA><RE>76192083-9</RE><RS>EMPRESA DE PRUEBA \xD1U", 0), 0u);
  EXPECT_NE(caf.flattened_da().find("&amp; C\xCD" "A</RS>"), std::string::npos);
}

TEST(Caf, VerifiesWithTheTestSiiKey) {
  Caf caf = Caf::parse(caf33());
  SiiKeyring keyring = test_keyring();
  auto checks = caf.check(keyring);
  ASSERT_EQ(checks.size(), 3u);
  for (const Check& c : checks) EXPECT_EQ(c.status, CheckStatus::kPass) << c.name << ": " << c.reason;
  EXPECT_NO_THROW(caf.verify(keyring));
}

TEST(Caf, UnknownIdkIsSkippedInCheckAndRaisedByVerify) {
  Caf caf = Caf::parse(caf33());
  SiiKeyring empty;
  auto checks = caf.check(empty);
  EXPECT_EQ(checks[0].name, "caf.sii_signature");
  EXPECT_EQ(checks[0].status, CheckStatus::kSkip);
  EXPECT_NE(checks[0].reason.find("IDK 100"), std::string::npos);
  EXPECT_EQ(code_of([&] { caf.verify(empty); }), "caf.unknown_idk");
}

TEST(Caf, WrongSiiKeyOrAlteredDaFailsSiiSignature) {
  SiiKeyring other;
  other.add_pem(100, testkit::make_rsa_key(1024).public_pem);
  Caf caf = Caf::parse(caf33());
  EXPECT_EQ(code_of([&] { caf.verify(other); }), "caf.sii_signature");

  std::string altered = replace_between(caf33(), "<H>", "</H>", "99999");
  Caf widened = Caf::parse(altered);
  EXPECT_EQ(widened.info().folio_to, 99999);
  EXPECT_EQ(code_of([&] { widened.verify(test_keyring()); }), "caf.sii_signature");
}

TEST(Caf, MismatchedPrivateKeyFailsKeyPair) {
  std::string other = testkit::make_caf(spec(), sii_key().private_pem);
  auto sk = [](const std::string& s) {
    auto a = s.find("<RSASK>");
    return s.substr(a, s.find("</RSASK>") - a);
  };
  std::string swapped = caf33();
  swapped.replace(swapped.find("<RSASK>"), sk(swapped).size(), sk(other));
  Caf caf = Caf::parse(swapped);
  auto checks = caf.check(test_keyring());
  EXPECT_EQ(checks[1].name, "caf.key_pair");
  EXPECT_EQ(checks[1].status, CheckStatus::kFail);
  EXPECT_EQ(code_of([&] { caf.verify(test_keyring()); }), "caf.key_pair");

  // RSAPUBK from another range: the public-key check fails and verify reports it as key_pair.
  auto pk = [](const std::string& s) {
    auto a = s.find("<RSAPUBK>");
    return s.substr(a, s.find("</RSAPUBK>") - a);
  };
  std::string swapped_pub = caf33();
  swapped_pub.replace(swapped_pub.find("<RSAPUBK>"), pk(swapped_pub).size(), pk(other));
  Caf caf2 = Caf::parse(swapped_pub);
  EXPECT_EQ(caf2.check(test_keyring())[2].status, CheckStatus::kFail);
  EXPECT_EQ(code_of([&] { caf2.verify(test_keyring()); }), "caf.key_pair");
}

TEST(Caf, CheckFitsNamesBothValues) {
  Caf caf = Caf::parse(caf33());
  EXPECT_NO_THROW(caf.check_fits("76.192.083-9", 33, 10, "2025-02-28"));
  EXPECT_NO_THROW(caf.check_fits("76192083-9", 33, 20, "2024-09-01"));
  try {
    caf.check_fits("11111111-1", 33, 10, "2024-09-01");
    FAIL();
  } catch (const CafError& e) {
    EXPECT_EQ(e.code(), "caf.wrong_rut");
    EXPECT_NE(std::string(e.what()).find("76192083-9"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("11111111-1"), std::string::npos);
  }
  try {
    caf.check_fits("76192083-9", 34, 10, "2024-09-01");
    FAIL();
  } catch (const CafError& e) {
    EXPECT_EQ(e.code(), "caf.wrong_type");
    EXPECT_NE(std::string(e.what()).find("33"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("34"), std::string::npos);
  }
  try {
    caf.check_fits("76192083-9", 33, 21, "2024-09-01");
    FAIL();
  } catch (const CafError& e) {
    EXPECT_EQ(e.code(), "caf.folio_out_of_range");
    EXPECT_NE(std::string(e.what()).find("21"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("10-20"), std::string::npos);
  }
  EXPECT_EQ(code_of([&] { caf.check_fits("76192083-9", 33, 9, "2024-09-01"); }),
            "caf.folio_out_of_range");
  try {
    caf.check_fits("76192083-9", 33, 10, "2025-03-01");
    FAIL();
  } catch (const CafError& e) {
    EXPECT_EQ(e.code(), "caf.expired");
    EXPECT_NE(std::string(e.what()).find("2025-02-28"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("2025-03-01"), std::string::npos);
  }
  // Empty date means today, long after this CAF's expiry.
  EXPECT_EQ(code_of([&] { caf.check_fits("76192083-9", 33, 10); }), "caf.expired");
}

TEST(Caf, GuiasAndBoletasDoNotExpire) {
  auto s = spec(52);
  s.authorized_on = "2001-01-01";
  Caf caf = Caf::parse(testkit::make_caf(s, sii_key().private_pem));
  EXPECT_EQ(caf.info().expires_on, "");
  EXPECT_NO_THROW(caf.check_fits("76192083-9", 52, 15));
}

TEST(Caf, SignsRsaSha1AndIsThreadSafe) {
  Caf caf = Caf::parse(caf33());
  std::string sig = caf.sign("hola");
  EXPECT_EQ(sig.size(), 64u);  // RSA-512
  EXPECT_TRUE(caf.verify_signature("hola", sig));
  EXPECT_FALSE(caf.verify_signature("hola!", sig));

  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        std::string data = "doc " + std::to_string(t) + "/" + std::to_string(i);
        if (caf.verify_signature(data, caf.sign(data))) ++good;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(good.load(), 200);
}

TEST(Caf, ParsesUtf8AndUndeclaredLatin1AndBareCaf) {
  Caf latin = Caf::parse(caf33());
  std::string utf8 = from_latin1(caf33());
  utf8.replace(0, utf8.find("?>") + 2, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
  Caf from_utf8 = Caf::parse(utf8);
  EXPECT_EQ(from_utf8.info().issuer_name, latin.info().issuer_name);
  EXPECT_EQ(from_utf8.flattened_da(), latin.flattened_da());
  EXPECT_NO_THROW(from_utf8.verify(test_keyring()));

  std::string undeclared = caf33().substr(caf33().find("?>") + 2);
  Caf from_undeclared = Caf::parse(undeclared);
  EXPECT_EQ(from_undeclared.info().issuer_name, latin.info().issuer_name);
  EXPECT_NO_THROW(from_undeclared.verify(test_keyring()));

  Caf bare = Caf::parse(latin.caf_xml());
  EXPECT_FALSE(bare.info().has_private_key);
  EXPECT_EQ(bare.flattened_da(), latin.flattened_da());
  auto checks = bare.check(test_keyring());
  EXPECT_EQ(checks[0].status, CheckStatus::kPass);
  EXPECT_EQ(checks[1].status, CheckStatus::kSkip);
  EXPECT_EQ(checks[2].status, CheckStatus::kSkip);
  EXPECT_NO_THROW(bare.verify(test_keyring()));
  EXPECT_EQ(code_of([&] { bare.sign("x"); }), "caf.no_private_key");
}

TEST(Caf, MalformedInputsHaveSpecificCodes) {
  EXPECT_EQ(code_of([] { Caf::parse("<EnvioDTE/>"); }), "caf.unreadable");
  EXPECT_EQ(code_of([] { Caf::parse("<AUTORIZACION><RSASK/></AUTORIZACION>"); }), "caf.missing_field");
  std::string no_idk = caf33();
  no_idk.erase(no_idk.find("<IDK>"), no_idk.find("</IDK>") + 6 - no_idk.find("<IDK>"));
  EXPECT_EQ(code_of([&] { Caf::parse(no_idk); }), "caf.missing_field");
  EXPECT_EQ(code_of([] { Caf::parse("<AUTORIZACION><CAF"); }), "xml.malformed");
  std::string bad_sk = replace_between(caf33(), "<RSASK>", "</RSASK>", "not a key");
  EXPECT_EQ(code_of([&] { Caf::parse(bad_sk); }), "caf.unreadable");
  SiiKeyring k;
  EXPECT_EQ(code_of([&] { k.add_pem(100, "garbage"); }), "caf.bad_key");
}

TEST(Caf, SharedPublicOnlyCafsVerifyWithSiiRealKeys) {
  if (!fs::is_directory(kShared / "caf") || !fs::is_directory(kShared / "certs"))
    GTEST_SKIP() << "shared SII material not found at " << kShared;
  SiiKeyring keyring;
  EXPECT_EQ(keyring.add_dir((kShared / "certs").string()), 2);  // sii-caf-idk100/300.cer
  EXPECT_EQ(keyring.idks(), (std::vector<int>{100, 300}));
  int seen = 0;
  for (const auto& entry : fs::directory_iterator(kShared / "caf")) {
    Caf caf = Caf::parse(read_file(entry.path()));
    auto checks = caf.check(keyring);
    EXPECT_EQ(checks[0].status, CheckStatus::kPass) << entry.path() << ": " << checks[0].reason;
    EXPECT_NO_THROW(caf.verify(keyring)) << entry.path();
    // The other IDK's key must not verify it.
    SiiKeyring swapped;
    swapped.add_pem(caf.info().idk, read_file(kShared / "certs" /
                                              (caf.info().idk == 100 ? "sii-caf-idk300.cer"
                                                                     : "sii-caf-idk100.cer")));
    EXPECT_EQ(code_of([&] { caf.verify(swapped); }), "caf.sii_signature");
    ++seen;
  }
  EXPECT_EQ(seen, 5);
}

TEST(Caf, KeyringAcceptsBarePublicKeyPemAndDirectories) {
  auto dir = fs::temp_directory_path() / ("dte-caf-keys-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "100.pub") << sii_key().public_pem;
  std::ofstream(dir / "notes.pem") << "ignored: not named by IDK";
  SiiKeyring k;
  EXPECT_EQ(k.add_dir(dir.string()), 1);
  fs::remove_all(dir);
  EXPECT_NO_THROW(Caf::parse(caf33()).verify(k));
  EXPECT_EQ(k.keys_for(300).size(), 0u);
}
