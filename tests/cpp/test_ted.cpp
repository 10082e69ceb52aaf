#include <gtest/gtest.h>
#include <png.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <functional>

#include <unistd.h>

#include "dte/caf.hpp"
#include "dte/errors.hpp"
#include "dte/ted.hpp"
#include "dte/testkit.hpp"
#include "dte/xml.hpp"

using namespace dte;
namespace fs = std::filesystem;

namespace {

const fs::path kShared = DTE_SHARED_DIR;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

const testkit::KeyPair& sii_key() {
  static const testkit::KeyPair key = testkit::make_rsa_key(1024);
  return key;
}

const Caf& test_caf() {
  static const Caf caf = [] {
    testkit::CafSpec s;
    s.issuer_rut = "76192083-9";
    s.doc_type = 33;
    s.folio_from = 1;
    s.folio_to = 100;
    s.idk = 100;  // FA = today: valid now
    return Caf::parse(testkit::make_caf(s, sii_key().private_pem));
  }();
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

// A minimal namespaced DTE as the document module builds it (UTF-8 text).
std::string sample_dte(const std::string& rsr, const std::string& item, long long folio = 7) {
  return "<DTE xmlns=\"http://www.sii.cl/SiiDte\" version=\"1.0\"><Documento ID=\"T33F" +
         std::to_string(folio) +
         "\"><Encabezado><IdDoc><TipoDTE>33</TipoDTE><Folio>" + std::to_string(folio) +
         "</Folio><FchEmis>2025-03-10</FchEmis></IdDoc><Emisor><RUTEmisor>76192083-9</RUTEmisor>"
         "</Emisor><Receptor><RUTRecep>96790240-3</RUTRecep><RznSocRecep>" +
         rsr +
         "</RznSocRecep></Receptor><Totales><MntNeto>1000</MntNeto><IVA>190</IVA>"
         "<MntTotal>1190</MntTotal></Totales></Encabezado><Detalle><NroLinDet>1</NroLinDet>"
         "<NmbItem>" +
         item +
         "</NmbItem></Detalle><Detalle><NroLinDet>2</NroLinDet><NmbItem>second</NmbItem></Detalle>"
         "<Referencia><NroLinRef>1</NroLinRef></Referencia></Documento></DTE>";
}

xmlNode* documento_of(xmlDoc* doc) { return child(xmlDocGetRootElement(doc), "Documento"); }

// Stamps, inserts and re-serialises as SII sees it: ISO-8859-1 bytes.
std::string stamped_bytes(const std::string& dte_text, std::string* ted_out = nullptr) {
  XmlDocPtr doc = parse_xml(dte_text);
  TedData data = ted_data_from_document(documento_of(doc.get()), "2025-03-10T12:00:00");
  std::string ted = stamp_ted(data, test_caf());
  if (ted_out) *ted_out = ted;
  insert_ted(doc.get(), ted, "2025-03-10T12:00:01");
  return serialize(doc.get());
}

std::vector<Check> verify_first_ted(const std::string& bytes, const SiiKeyring& keyring,
                                    bool with_document = true) {
  XmlDocPtr doc = parse_xml(bytes);
  auto teds = descendants(xmlDocGetRootElement(doc.get()), "TED");
  EXPECT_EQ(teds.size(), 1u);
  if (teds.empty()) return {};
  return verify_ted(teds[0], with_document ? teds[0]->parent : nullptr, keyring, "T33F7");
}

const Check* find_check(const std::vector<Check>& checks, const std::string& name) {
  for (const auto& c : checks)
    if (c.name == name) return &c;
  return nullptr;
}

}  // namespace

TEST(Ted, DataFromDocumentTruncatesFreeText) {
  XmlDocPtr doc = parse_xml(sample_dte(std::string(50, 'R'), "Ñandú " + std::string(50, 'x')));
  TedData d = ted_data_from_document(documento_of(doc.get()), "2025-03-10T12:00:00");
  EXPECT_EQ(d.re, "76192083-9");
  EXPECT_EQ(d.td, 33);
  EXPECT_EQ(d.f, 7);
  EXPECT_EQ(d.fe, "2025-03-10");
  EXPECT_EQ(d.rr, "96790240-3");
  EXPECT_EQ(d.rsr, std::string(40, 'R'));
  EXPECT_EQ(d.mnt, "1190");
  EXPECT_EQ(d.it1, "Ñandú " + std::string(34, 'x'));  // 40 characters, not bytes
  EXPECT_EQ(d.tsted, "2025-03-10T12:00:00");
  // The DTE element is accepted too.
  EXPECT_EQ(ted_data_from_document(xmlDocGetRootElement(doc.get()), "").f, 7);
}

TEST(Ted, StampInsertVerifyRoundTrip) {
  std::string ted;
  // '&', '<', quotes and Latin-1 letters in the free text: escaping must agree both ways.
  std::string bytes = stamped_bytes(
      sample_dte("Pérez &amp; Hijos &lt;Ltda&gt; \"PYH\" 'x'", "Artículo Ñ &amp; co"), &ted);
  EXPECT_EQ(ted.rfind("<TED version=\"1.0\"><DD><RE>76192083-9</RE><TD>33</TD><F>7</F>", 0), 0u);
  EXPECT_NE(ted.find("<RSR>Pérez &amp; Hijos &lt;Ltda&gt; \"PYH\" 'x'</RSR>"), std::string::npos);
  EXPECT_NE(ted.find("<CAF version=\"1.0\"><DA><RE>"), std::string::npos);
  EXPECT_NE(ted.find("<TSTED>2025-03-10T12:00:00</TSTED></DD><FRMT algoritmo=\"SHA1withRSA\">"),
            std::string::npos);
  EXPECT_EQ(ted.find("xmlns"), std::string::npos);

  auto checks = verify_first_ted(bytes, test_keyring());
  ASSERT_EQ(checks.size(), 3u);
  for (const Check& c : checks) {
    EXPECT_EQ(c.status, CheckStatus::kPass) << c.name << ": " << c.reason;
    EXPECT_EQ(c.subject, "T33F7");
  }
  // Unknown IDK: the CAF check is skipped, the timbre itself still verifies.
  SiiKeyring empty;
  auto no_keys = verify_first_ted(bytes, empty);
  EXPECT_EQ(find_check(no_keys, "ted.caf")->status, CheckStatus::kSkip);
  EXPECT_EQ(find_check(no_keys, "ted.frmt")->status, CheckStatus::kPass);
}

TEST(Ted, InsertPlacesTedLastInSiiNamespace) {
  std::string bytes = stamped_bytes(sample_dte("ACME", "item"));
  XmlDocPtr doc = parse_xml(bytes);
  xmlNode* documento = documento_of(doc.get());
  std::vector<std::string> order;
  for (xmlNode* c = documento->children; c; c = c->next)
    if (c->type == XML_ELEMENT_NODE) order.emplace_back(reinterpret_cast<const char*>(c->name));
  ASSERT_GE(order.size(), 3u);
  EXPECT_EQ(order[order.size() - 3], "Referencia");
  EXPECT_EQ(order[order.size() - 2], "TED");
  EXPECT_EQ(order.back(), "TmstFirma");
  EXPECT_EQ(text_at(documento, "TmstFirma"), "2025-03-10T12:00:01");
  for (xmlNode* n : descendants(child(documento, "TED"), "RE")) {
    ASSERT_NE(n->ns, nullptr);
    EXPECT_STREQ(reinterpret_cast<const char*>(n->ns->href), kSiiNs);
  }
  // Serialised, the TED inherits the default namespace instead of declaring one.
  auto ted_pos = bytes.find("<TED");
  EXPECT_EQ(bytes.find("xmlns", ted_pos), std::string::npos);

  // Re-stamping replaces the TED before the existing TmstFirma.
  XmlDocPtr again = parse_xml(bytes);
  std::string ted2 = stamp_ted(ted_data_from_document(documento_of(again.get()), "2025-03-11T00:00:00"),
                               test_caf());
  insert_ted(again.get(), ted2, "2025-03-11T00:00:01");
  EXPECT_EQ(children(documento_of(again.get()), "TED").size(), 1u);
  EXPECT_EQ(children(documento_of(again.get()), "TmstFirma").size(), 1u);
  EXPECT_EQ(text_at(documento_of(again.get()), "TED/DD/TSTED"), "2025-03-11T00:00:00");
  EXPECT_EQ(text_at(documento_of(again.get()), "TmstFirma"), "2025-03-11T00:00:01");
}

TEST(Ted, TamperedMontoFailsFrmt) {
  std::string bytes = stamped_bytes(sample_dte("ACME", "item"));
  std::string tampered = bytes;
  tampered.replace(tampered.find("<MNT>1190</MNT>"), 15, "<MNT>1191</MNT>");
  auto checks = verify_first_ted(tampered, test_keyring());
  EXPECT_EQ(find_check(checks, "ted.frmt")->status, CheckStatus::kFail);
  EXPECT_EQ(find_check(checks, "ted.caf")->status, CheckStatus::kPass);
  const Check* consistency = find_check(checks, "ted.consistency");
  EXPECT_EQ(consistency->status, CheckStatus::kFail);
  EXPECT_NE(consistency->reason.find("MNT"), std::string::npos);

  // Document total changed but TED intact: the timbre verifies, consistency does not.
  std::string doc_changed = bytes;
  doc_changed.replace(doc_changed.find("<MntTotal>1190</MntTotal>"), 25, "<MntTotal>2000</MntTotal>");
  auto checks2 = verify_first_ted(doc_changed, test_keyring());
  EXPECT_EQ(find_check(checks2, "ted.frmt")->status, CheckStatus::kPass);
  EXPECT_EQ(find_check(checks2, "ted.consistency")->status, CheckStatus::kFail);
  EXPECT_EQ(find_check(verify_first_ted(doc_changed, test_keyring(), false), "ted.consistency")->status,
            CheckStatus::kPass);
}

TEST(Ted, StampRefusesWhatTheCafDoesNotCover) {
  XmlDocPtr doc = parse_xml(sample_dte("ACME", "item", 101));
  TedData d = ted_data_from_document(documento_of(doc.get()), "");
  EXPECT_EQ(code_of([&] { stamp_ted(d, test_caf()); }), "caf.folio_out_of_range");
  d.f = 5;
  d.td = 34;
  EXPECT_EQ(code_of([&] { stamp_ted(d, test_caf()); }), "caf.wrong_type");
  d.td = 33;
  Caf public_only = Caf::parse(test_caf().caf_xml());
  EXPECT_EQ(code_of([&] { stamp_ted(d, public_only); }), "caf.no_private_key");
  EXPECT_NO_THROW(stamp_ted(d, test_caf()));
}

TEST(Ted, BarcodePayloadIsFlatLatin1WithoutNamespace) {
  std::string bytes = stamped_bytes(sample_dte("Ñuñoa SpA", "item"));
  XmlDocPtr doc = parse_xml(bytes);
  xmlNode* ted = descendants(xmlDocGetRootElement(doc.get()), "TED").at(0);
  std::string payload = ted_barcode_payload(ted);
  EXPECT_EQ(payload.rfind("<TED version=\"1.0\"><DD><RE>", 0), 0u);
  EXPECT_EQ(payload.find("xmlns"), std::string::npos);
  EXPECT_NE(payload.find("<RSR>\xD1u\xF1oa SpA</RSR>"), std::string::npos);
  EXPECT_EQ(payload.substr(payload.size() - 13), "</FRMT></TED>");
  EXPECT_EQ(ted_barcode_payload(bytes), payload);
}

TEST(Ted, RealSamplesVerify) {
  if (!fs::is_directory(kShared / "samples"))
    GTEST_SKIP() << "shared SII samples not found at " << kShared;
  SiiKeyring keyring;
  keyring.add_dir((kShared / "certs").string());
  const char* files[] = {
      "DTE--60910000-1--33--2336600.xml",        "DTE--60910000-1--33--2336600--cleaned.xml",
      "DTE--76354771-K--33--170.xml",            "DTE--76354771-K--33--170--cleaned.xml",
      "DTE--76399752-9--33--25568.xml",          "DTE--76399752-9--33--25568--cleaned.xml",
      "DTE--96670340-7--61--110616.xml",         "DTE--96670340-7--61--110616--cleaned.xml",
      "AEC--76354771-K--33--170--SEQ-2.xml",     "AEC--76399752-9--33--25568--SEQ-1.xml",
      "F60T33-ejemplo-oficial-SII.xml"};
  int verified = 0;
  for (const char* name : files) {
    XmlDocPtr doc = parse_xml(read_file(kShared / "samples" / name));
    auto teds = descendants(xmlDocGetRootElement(doc.get()), "TED");
    ASSERT_EQ(teds.size(), 1u) << name;
    for (const Check& c : verify_ted(teds[0], teds[0]->parent, keyring, name))
      EXPECT_EQ(c.status, CheckStatus::kPass) << name << " " << c.name << ": " << c.reason;
    ++verified;
  }
  EXPECT_EQ(verified, 11);

  XmlDocPtr broken = parse_xml(
      read_file(kShared / "samples/broken/DTE--76354771-K--33--170--cleaned-mod-changed-monto.xml"));
  xmlNode* ted = descendants(xmlDocGetRootElement(broken.get()), "TED").at(0);
  auto checks = verify_ted(ted, ted->parent, keyring, "changed-monto");
  EXPECT_EQ(find_check(checks, "ted.frmt")->status, CheckStatus::kFail);
  EXPECT_EQ(find_check(checks, "ted.caf")->status, CheckStatus::kPass);
}

// ------------------------------------------------------------------------------ barcode

namespace {

struct Gray {
  int width = 0;
  int height = 0;
  std::string pixels;
};

Gray decode_png(const std::string& png) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  Gray out;
  if (!png_image_begin_read_from_memory(&image, png.data(), png.size())) return out;
  image.format = PNG_FORMAT_GRAY;
  out.pixels.resize(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, out.pixels.data(), 0, nullptr)) {
    png_image_free(&image);
    return {};
  }
  out.width = static_cast<int>(image.width);
  out.height = static_cast<int>(image.height);
  return out;
}

}  // namespace

TEST(Barcode, Pdf417PngIsARealPng) {
  std::string payload = ted_barcode_payload(stamped_bytes(sample_dte("ACME", "item")));
  std::string png = pdf417_png(payload);
  ASSERT_GT(png.size(), 8u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  Gray img = decode_png(png);
  ASSERT_GT(img.width, 0);
  ASSERT_GT(img.height, 0);
  EXPECT_GT(img.width, img.height);  // PDF417 of a TED is wide and short

  BarcodeOptions small;
  small.module_px = 1;
  Gray half = decode_png(pdf417_png(payload, small));
  EXPECT_EQ(half.width * 2, img.width);
  EXPECT_EQ(half.height * 2, img.height);

  // Quiet zone and corner pixels are white; some pixels are black.
  EXPECT_EQ(static_cast<unsigned char>(img.pixels[0]), 255);
  EXPECT_NE(img.pixels.find('\0'), std::string::npos);

  EXPECT_EQ(code_of([] { pdf417_png(""); }), "barcode.encode");
  BarcodeOptions bad;
  bad.ecc_level = 9;
  EXPECT_EQ(code_of([&] { pdf417_png("x", bad); }), "barcode.encode");
}

TEST(Barcode, Pdf417SvgIsVector) {
  std::string svg = pdf417_svg("<TED version=\"1.0\">abc</TED>");
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_NE(svg.find("<svg xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
  EXPECT_NE(svg.find("<path fill=\"#000000\" d=\"M"), std::string::npos);
  EXPECT_NO_THROW(parse_xml(svg));
}

// Decodes the PNG with zxing-cpp (Debian python3-zxing-cpp) when it is installed.
TEST(Barcode, Pdf417RoundTripsThroughZxing) {
  std::string python = std::string(DTE_SOURCE_DIR) + "/.venv/bin/python";
  if (!fs::exists(python)) python = "python3";
  if (std::system((python + " -c 'import zxingcpp, numpy' >/dev/null 2>&1").c_str()) != 0)
    GTEST_SKIP() << "zxing-cpp for Python not installed (apt-get install python3-zxing-cpp)";

  std::string payload = ted_barcode_payload(stamped_bytes(sample_dte("Ñuñoa &amp; Cía", "item")));
  Gray img = decode_png(pdf417_png(payload));
  ASSERT_GT(img.width, 0);
  auto dir = fs::temp_directory_path() / ("dte-pdf417-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "pixels.raw", std::ios::binary) << img.pixels;
  std::string script =
      "import sys, numpy, zxingcpp\n"
      "d = sys.argv[1]\n"
      "a = numpy.fromfile(d + '/pixels.raw', dtype=numpy.uint8).reshape(int(sys.argv[3]), int(sys.argv[2]))\n"
      "r = zxingcpp.read_barcode(a, formats=zxingcpp.BarcodeFormat.PDF417)\n"
      "open(d + '/decoded.bin', 'wb').write(r.bytes if r and r.valid else b'')\n";
  std::ofstream(dir / "decode.py") << script;
  std::string cmd = python + " " + (dir / "decode.py").string() + " " + dir.string() + " " +
                    std::to_string(img.width) + " " + std::to_string(img.height);
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::string decoded = read_file(dir / "decoded.bin");
  fs::remove_all(dir);
  EXPECT_EQ(decoded, payload);
}
