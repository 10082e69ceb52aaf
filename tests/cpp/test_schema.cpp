#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "dte/errors.hpp"
#include "dte/schema.hpp"
#include "dte/xml.hpp"

using namespace dte;
namespace fs = std::filesystem;

namespace {

std::string xsd_dir() {
  const char* env = std::getenv("DTE_XSD_DIR");
  return env && *env ? env : std::string(DTE_SHARED_DIR) + "/xsd";
}

bool have_xsds() { return fs::exists(fs::path(xsd_dir()) / "DTE_v10.xsd"); }

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

fs::path sample(const std::string& name) { return fs::path(DTE_SHARED_DIR) / "samples" / name; }

#define REQUIRE_XSDS()                                                                      \
  if (!have_xsds()) GTEST_SKIP() << "SII XSDs not found in '" << xsd_dir()                 \
                                 << "' (set DTE_XSD_DIR)";                                  \
  do {                                                                                      \
  } while (0)

#define REQUIRE_SAMPLE(p) \
  if (!fs::exists(p)) GTEST_SKIP() << "shared sample missing: " << (p)

std::string issues_text(const ValidationResult& r) {
  std::string out;
  for (const auto& e : r.errors)
    out += std::to_string(e.line) + " " + e.path + ": " + e.message + "\n";
  return out;
}

}  // namespace

TEST(Schema, MissingFolderIsSpecific) {
  try {
    SchemaSet set("/nonexistent/xsd/folder");
    FAIL();
  } catch (const SchemaError& e) {
    EXPECT_EQ(e.code(), "schema.dir_missing");
  }
}

TEST(Schema, CleanedRealDtesAreValid) {
  REQUIRE_XSDS();
  auto set = SchemaSet::shared(xsd_dir());
  for (const char* name :
       {"DTE--60910000-1--33--2336600--cleaned.xml", "DTE--76354771-K--33--170--cleaned.xml",
        "DTE--76399752-9--33--25568--cleaned.xml", "DTE--96670340-7--61--110616--cleaned.xml"}) {
    auto path = sample(name);
    REQUIRE_SAMPLE(path);
    auto r = set->validate_bytes(read_file(path));
    EXPECT_TRUE(r.valid) << name << "\n" << issues_text(r);
    EXPECT_EQ(r.schema, "DTE_v10.xsd");
  }
}

TEST(Schema, OfficialEnvioDteAndAecAreValid) {
  REQUIRE_XSDS();
  auto set = SchemaSet::shared(xsd_dir());
  struct Case {
    const char* file;
    const char* xsd;
  };
  for (auto c : {Case{"F60T33-ejemplo-oficial-SII.xml", "EnvioDTE_v10.xsd"},
                 Case{"AEC--76354771-K--33--170--SEQ-2.xml", "AEC_v10.xsd"},
                 Case{"AEC--76399752-9--33--25568--SEQ-1.xml", "AEC_v10.xsd"}}) {
    auto path = sample(c.file);
    REQUIRE_SAMPLE(path);
    auto r = set->validate_bytes(read_file(path));
    EXPECT_TRUE(r.valid) << c.file << "\n" << issues_text(r);
    EXPECT_EQ(r.schema, c.xsd);
  }
}

TEST(Schema, BrokenSamplesAsManifestSays) {
  REQUIRE_XSDS();
  auto set = SchemaSet::shared(xsd_dir());
  const std::string base = "broken/DTE--76354771-K--33--170--cleaned-mod-";
  for (const char* ok : {"changed-monto.xml", "bad-cert.xml", "replaced-cert.xml"}) {
    auto path = sample(base + ok);
    REQUIRE_SAMPLE(path);
    EXPECT_TRUE(set->validate_bytes(read_file(path)).valid) << ok;
  }
  for (const char* bad : {"empty-emails.xml", "removed-signature.xml", "bad-cert-no-base64.xml"}) {
    auto path = sample(base + bad);
    REQUIRE_SAMPLE(path);
    auto r = set->validate_bytes(read_file(path));
    EXPECT_FALSE(r.valid) << bad;
    ASSERT_FALSE(r.errors.empty()) << bad;
    EXPECT_GT(r.errors[0].line, 1) << bad;
    EXPECT_EQ(r.errors[0].path.rfind("/DTE/Documento", 0) == 0 ||
                  r.errors[0].path.rfind("/DTE/Signature", 0) == 0 || r.errors[0].path == "/DTE",
              true)
        << bad << ": " << r.errors[0].path;
  }
  auto r = set->validate_bytes(read_file(sample(base + "empty-emails.xml")));
  ASSERT_FALSE(r.errors.empty());
  EXPECT_EQ(r.errors[0].line, 30);
  EXPECT_EQ(r.errors[0].path, "/DTE/Documento/Encabezado/Receptor/Contacto");
  EXPECT_NE(r.errors[0].message.find("This element is not expected"), std::string::npos);
  EXPECT_NE(r.errors[0].message.back(), '\n');
}

TEST(Schema, RawDtesWithoutNamespaceHaveNoGlobalDeclaration) {
  REQUIRE_XSDS();
  auto set = SchemaSet::shared(xsd_dir());
  for (const char* name : {"DTE--60910000-1--33--2336600.xml", "DTE--76354771-K--33--170.xml"}) {
    auto path = sample(name);
    REQUIRE_SAMPLE(path);
    auto r = set->validate_bytes(read_file(path));
    EXPECT_FALSE(r.valid);
    ASSERT_FALSE(r.errors.empty());
    EXPECT_NE(r.errors[0].message.find("No matching global declaration"), std::string::npos)
        << issues_text(r);
    EXPECT_EQ(r.errors[0].path, "/DTE");
  }
}

TEST(Schema, BareBoletaIsCheckedInsideASynthesisedEnvelope) {
  REQUIRE_XSDS();
  auto path = sample("libredte-boleta_multidetalle.xml");
  REQUIRE_SAMPLE(path);
  auto set = SchemaSet::shared(xsd_dir());
  auto r = set->validate_bytes(read_file(path));
  EXPECT_EQ(r.schema, "EnvioBOLETA_v11.xsd (synthesised envelope)");
  // The sample is input-style data (no TED, no signature): invalid, but against the boleta
  // type, not for lack of a global declaration.
  EXPECT_FALSE(r.valid);
  ASSERT_FALSE(r.errors.empty());
  for (const auto& e : r.errors) {
    EXPECT_EQ(e.message.find("No matching global declaration"), std::string::npos) << e.message;
    EXPECT_EQ(e.path.rfind("/DTE", 0), 0u) << e.path;
    EXPECT_GT(e.line, 1) << e.message;
  }
}

TEST(Schema, UnknownRootAndUnknownFileAreErrors) {
  REQUIRE_XSDS();
  auto set = SchemaSet::shared(xsd_dir());
  try {
    set->validate_bytes("<Nada xmlns=\"http://www.sii.cl/SiiDte\"/>");
    FAIL();
  } catch (const SchemaError& e) {
    EXPECT_EQ(e.code(), "schema.unknown_root");
  }
  auto doc = parse_xml("<DTE/>");
  try {
    set->validate_with(doc.get(), "NoSuch_v10.xsd");
    FAIL();
  } catch (const SchemaError& e) {
    EXPECT_EQ(e.code(), "schema.file_missing");
  }
  EXPECT_THROW(set->validate_with(doc.get(), "../xsd/DTE_v10.xsd"), SchemaError);
}

TEST(Schema, RemoteIncludesAreRefusedBeforeCompiling) {
  auto dir = fs::temp_directory_path() / ("dte_schema_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  {
    std::ofstream(dir / "Remote.xsd")
        << "<?xml version=\"1.0\"?><xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\">"
           "<xs:include schemaLocation=\"http://127.0.0.1:9/evil.xsd\"/>"
           "<xs:element name=\"Remote\"/></xs:schema>";
    std::ofstream(dir / "Entity.xsd")
        << "<?xml version=\"1.0\"?><!DOCTYPE xs:schema [<!ENTITY x SYSTEM \"/etc/passwd\">]>"
           "<xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\">"
           "<xs:element name=\"Entity\"/></xs:schema>";
    std::ofstream(dir / "Local.xsd")
        << "<?xml version=\"1.0\"?><xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\">"
           "<xs:element name=\"Local\" type=\"xs:int\"/></xs:schema>";
  }
  SchemaSet set(dir.string());
  auto doc = parse_xml("<Remote/>");
  for (const char* xsd : {"Remote.xsd", "Entity.xsd"}) {
    try {
      set.validate_with(doc.get(), xsd);
      ADD_FAILURE() << xsd << " compiled";
    } catch (const SchemaError& e) {
      EXPECT_EQ(e.code(), "schema.compile") << xsd;
    }
  }
  auto good = parse_xml("<Local>12</Local>");
  EXPECT_TRUE(set.validate_with(good.get(), "Local.xsd").valid);
  auto bad = parse_xml("<Local>x</Local>");
  auto r = set.validate_with(bad.get(), "Local.xsd");
  EXPECT_FALSE(r.valid);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].path, "/Local");
  EXPECT_EQ(r.errors[0].line, 1);
  fs::remove_all(dir);
}

TEST(Schema, ConcurrentValidationSharesOneCompiledSchema) {
  REQUIRE_XSDS();
  auto good_path = sample("DTE--76354771-K--33--170--cleaned.xml");
  auto bad_path = sample("broken/DTE--76354771-K--33--170--cleaned-mod-empty-emails.xml");
  REQUIRE_SAMPLE(good_path);
  REQUIRE_SAMPLE(bad_path);
  const std::string good = read_file(good_path);
  const std::string bad = read_file(bad_path);
  // A fresh set, so that the first compile itself races between the threads.
  SchemaSet set(xsd_dir());
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 15; ++i) {
        bool want_valid = (i + t) % 2 == 0;
        auto r = set.validate_bytes(want_valid ? good : bad);
        if (r.valid != want_valid) ++wrong;
        if (!want_valid && (r.errors.empty() || r.errors[0].line != 30)) ++wrong;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
}
