#include <gtest/gtest.h>

#include <zip.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "dte/mime.hpp"
#include "dte/xml.hpp"

using namespace dte;
using namespace dte::mime;

namespace {

const std::string kXml = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<EnvioDTE>caf\xE9</EnvioDTE>\n";

std::string header(const std::string& boundary) {
  return "From: =?ISO-8859-1?Q?Jos=E9_Proveedor?= <dte@proveedor.cl>\r\n"
         "Reply-To: intercambio@proveedor.cl\r\n"
         "To: recepcion@empresa.cl\r\n"
         "Subject: =?UTF-8?B?RW52w61vIGRlIERURQ==?=\r\n"
         "Date: Tue, 04 Mar 2025 10:00:00 -0300\r\n"
         "Message-ID: <abc@proveedor.cl>\r\n"
         "MIME-Version: 1.0\r\n"
         "Content-Type: multipart/mixed; boundary=\"" + boundary + "\"\r\n\r\n";
}

}  // namespace

TEST(Mime, NestedMultipartsBase64AndQuotedPrintable) {
  std::string qp_xml = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\r\n<RespuestaDTE>caf=E9 =\r\nlargo</RespuestaDTE>";
  std::string raw = header("outer") +
                    "--outer\r\nContent-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n"
                    "--inner\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHola\r\n"
                    "--inner\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hola</p>\r\n"
                    "--inner--\r\n"
                    "--outer\r\nContent-Type: application/xml; name=\"envio.xml\"\r\n"
                    "Content-Disposition: attachment; filename=\"envio.xml\"\r\n"
                    "Content-Transfer-Encoding: base64\r\n\r\n" +
                    base64_encode(kXml, 76) +
                    "\r\n--outer\r\nContent-Type: text/xml; charset=ISO-8859-1\r\n"
                    "Content-Disposition: attachment; filename=\"resp.xml\"\r\n"
                    "Content-Transfer-Encoding: quoted-printable\r\n\r\n" +
                    qp_xml + "\r\n--outer\r\nContent-Type: application/pdf; name=\"f.pdf\"\r\n"
                    "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--outer--\r\n";
  Message m = parse_message(raw);
  ASSERT_TRUE(m.ok) << m.error;
  EXPECT_EQ(m.from, "dte@proveedor.cl");
  EXPECT_EQ(m.reply_to, "intercambio@proveedor.cl");
  EXPECT_EQ(m.subject, "Env\xC3\xADo de DTE");  // decoded from UTF-8 B-encoding
  EXPECT_EQ(m.message_id, "abc@proveedor.cl");
  EXPECT_EQ(m.date, "2025-03-04T13:00:00Z");
  ASSERT_EQ(m.xml.size(), 2u);
  EXPECT_EQ(m.xml[0].filename, "envio.xml");
  EXPECT_EQ(m.xml[0].data, kXml);  // bytes as sent, Latin-1 untouched
  EXPECT_EQ(m.xml[1].filename, "resp.xml");
  EXPECT_EQ(m.xml[1].charset, "ISO-8859-1");
  EXPECT_NE(m.xml[1].data.find("caf\xE9 largo</RespuestaDTE>"), std::string::npos);
  EXPECT_TRUE(m.refused.empty());
}

TEST(Mime, ForwardedMessageAndUnnamedOctetStream) {
  std::string inner = "From: a@b.cl\r\nSubject: fwd\r\nMIME-Version: 1.0\r\n"
                      "Content-Type: multipart/mixed; boundary=\"b2\"\r\n\r\n"
                      "--b2\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
                      base64_encode(kXml, 76) + "\r\n--b2--\r\n";
  std::string raw = header("b1") + "--b1\r\nContent-Type: message/rfc822\r\n\r\n" + inner + "\r\n--b1--\r\n";
  Message m = parse_message(raw);
  ASSERT_TRUE(m.ok);
  ASSERT_EQ(m.xml.size(), 1u);
  EXPECT_EQ(m.xml[0].data, kXml);
}

TEST(Mime, RefusesOversizedNonXmlAndZip) {
  MimeLimits limits;
  limits.max_attachment_bytes = 1000;
  std::string big(5000, 'A');
  std::string raw = header("b") +
                    "--b\r\nContent-Type: application/xml\r\nContent-Disposition: attachment; filename=\"big.xml\"\r\n"
                    "Content-Transfer-Encoding: base64\r\n\r\n" + base64_encode("<a>" + big + "</a>", 76) +
                    "\r\n--b\r\nContent-Type: application/xml\r\nContent-Disposition: attachment; filename=\"bad.xml\"\r\n\r\n"
                    "this is not xml\r\n"
                    "--b\r\nContent-Type: application/zip\r\nContent-Disposition: attachment; filename=\"dte.zip\"\r\n"
                    "Content-Transfer-Encoding: base64\r\n\r\n" + base64_encode("PK\x03\x04rest", 76) + "\r\n--b--\r\n";
  Message m = parse_message(raw, limits);
  ASSERT_TRUE(m.ok);
  EXPECT_TRUE(m.xml.empty());
  ASSERT_EQ(m.refused.size(), 3u);
  EXPECT_EQ(m.refused[0].code, "mime.oversized");
  EXPECT_EQ(m.refused[1].code, "mime.not_xml");
  EXPECT_EQ(m.refused[2].code, "mime.zip_corrupt");  // "PK\3\4" and garbage: not an archive
}

TEST(Mime, GarbageNeverCrashes) {
  MimeLimits limits;
  limits.max_message_bytes = 100;
  EXPECT_FALSE(parse_message("", limits).ok);
  EXPECT_EQ(parse_message(std::string(200, 'x'), limits).error_code, "mime.too_large");
  for (std::string raw : {std::string("\x00\x01\x02", 3), std::string("Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n"),
                          std::string("Subject: only headers"), std::string(":\r\n\r\n\r\n--")}) {
    Message m = parse_message(raw);
    EXPECT_TRUE(m.xml.empty());
  }
  // Deep nesting is cut, not recursed into forever.
  std::string deep = "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n";
  for (int i = 1; i < 40; ++i) deep += "--b" + std::to_string(i - 1) + "\r\nContent-Type: multipart/mixed; boundary=\"b" + std::to_string(i) + "\"\r\n\r\n";
  Message m = parse_message(deep);
  EXPECT_TRUE(m.xml.empty());
}

TEST(Mime, BuildsMessagesThatParseBack) {
  std::string raw = build_message("dte@empresa.cl", "intercambio@proveedor.cl", "Respuesta a env\xC3\xADo",
                                  "Adjuntamos la respuesta.", {{"respuesta.xml", "application/xml", kXml}});
  EXPECT_NE(raw.find("\r\n\r\n"), std::string::npos);  // CRLF lines, as SMTP wants
  EXPECT_EQ(raw.find("\n"), raw.find("\r\n") + 1);
  Message m = parse_message(raw);
  ASSERT_TRUE(m.ok);
  EXPECT_EQ(m.subject, "Respuesta a env\xC3\xADo");
  ASSERT_EQ(m.xml.size(), 1u);
  EXPECT_EQ(m.xml[0].data, kXml);
  EXPECT_EQ(m.xml[0].filename, "respuesta.xml");
}

// ------------------------------------------------------------------------------ zip attachments

namespace {

struct ZipFile {
  std::string name, data;
  const char* password = nullptr;  // AES-256 when set
  bool store = false;              // no compression
};

// A zip made in memory with libzip (the writer side of the library the reader uses).
std::string make_zip(const std::vector<ZipFile>& files) {
  zip_error_t err;
  zip_error_init(&err);
  zip_source_t* buf = zip_source_buffer_create(nullptr, 0, 0, &err);
  zip_source_keep(buf);
  zip_t* za = zip_open_from_source(buf, ZIP_TRUNCATE, &err);
  EXPECT_NE(za, nullptr);
  for (const auto& f : files) {
    zip_source_t* s = zip_source_buffer_create(f.data.data(), f.data.size(), 0, &err);
    zip_int64_t idx = zip_file_add(za, f.name.c_str(), s, ZIP_FL_ENC_UTF_8);
    EXPECT_GE(idx, 0);
    if (f.store) zip_set_file_compression(za, static_cast<zip_uint64_t>(idx), ZIP_CM_STORE, 0);
    if (f.password) {
      EXPECT_EQ(zip_file_set_encryption(za, static_cast<zip_uint64_t>(idx), ZIP_EM_AES_256, f.password), 0);
    }
  }
  EXPECT_EQ(zip_close(za), 0);
  std::string out;
  EXPECT_EQ(zip_source_open(buf), 0);
  char chunk[8192];
  zip_int64_t n;
  while ((n = zip_source_read(buf, chunk, sizeof chunk)) > 0) out.append(chunk, static_cast<std::size_t>(n));
  zip_source_close(buf);
  zip_source_free(buf);
  zip_error_fini(&err);
  return out;
}

std::string zip_mail(const std::string& zip, const std::string& name = "dte.zip") {
  return header("z") + "--z\r\nContent-Type: text/plain\r\n\r\nAdjunto\r\n"
         "--z\r\nContent-Type: application/zip; name=\"" + name + "\"\r\n"
         "Content-Disposition: attachment; filename=\"" + name + "\"\r\n"
         "Content-Transfer-Encoding: base64\r\n\r\n" + base64_encode(zip, 76) + "\r\n--z--\r\n";
}

bool refused_with(const Message& m, const std::string& code) {
  for (const auto& r : m.refused)
    if (r.code == code && !r.reason.empty()) return true;
  return false;
}

}  // namespace

TEST(MimeZip, FindsXmlInsideAndIgnoresPathNames) {
  std::string zip = make_zip({{"../../etc/envio.xml", kXml},
                              {"docs/factura.pdf", "%PDF-1.4 not xml"},
                              {"carpeta/", ""},
                              {"C:\\temp\\resp.xml", "<RespuestaDTE/>"}});
  Message m = parse_message(zip_mail(zip));
  ASSERT_TRUE(m.ok) << m.error;
  EXPECT_TRUE(m.refused.empty()) << m.refused[0].code << ": " << m.refused[0].reason;
  ASSERT_EQ(m.xml.size(), 2u);
  EXPECT_EQ(m.xml[0].filename, "envio.xml");  // base name only
  EXPECT_EQ(m.xml[0].data, kXml);             // bytes untouched (Latin-1 stays Latin-1)
  EXPECT_EQ(m.xml[0].part_path, "2/zip:1");
  EXPECT_EQ(m.xml[1].filename, "resp.xml");
}

TEST(MimeZip, NestedOneLevelOpensDeeperIsRefused) {
  std::string inner = make_zip({{"inner.xml", "<EnvioDTE/>"}});
  std::string middle = make_zip({{"inner.zip", inner}, {"b.xml", "<RespuestaDTE/>"}});
  Message one = parse_message(zip_mail(middle));
  ASSERT_EQ(one.xml.size(), 2u);
  EXPECT_EQ(one.xml[0].data, "<EnvioDTE/>");
  EXPECT_EQ(one.xml[0].part_path, "2/zip:1/1");
  EXPECT_TRUE(one.refused.empty());

  std::string outer = make_zip({{"middle.zip", middle}});
  Message two = parse_message(zip_mail(outer));
  EXPECT_TRUE(refused_with(two, "mime.zip_nested"));
  ASSERT_EQ(two.xml.size(), 1u);  // b.xml of the first nested level is still read
  EXPECT_EQ(two.xml[0].filename, "b.xml");
}

TEST(MimeZip, ZipBombsAreRefusedWithReason) {
  // Ratio: 8 MiB of zeros deflate to a few KiB.
  std::string zeros(8 * 1024 * 1024, '\0');
  Message ratio = parse_message(zip_mail(make_zip({{"bomb.xml", zeros}})));
  ASSERT_TRUE(ratio.ok);
  EXPECT_TRUE(ratio.xml.empty());
  ASSERT_TRUE(refused_with(ratio, "mime.zip_bomb"));
  EXPECT_NE(ratio.refused[0].reason.find("zip bomb"), std::string::npos);

  // Total declared size beyond the limit: refused before inflating anything.
  MimeLimits small;
  small.max_zip_total_bytes = 100 * 1024;
  std::string text(60 * 1024, 'x');
  for (std::size_t i = 0; i < text.size(); i += 7) text[i] = static_cast<char>('a' + i % 26);
  Message total = parse_message(zip_mail(make_zip({{"a.xml", "<a>" + text + "</a>"}, {"b.xml", "<b>" + text + "</b>"}})), small);
  EXPECT_TRUE(total.xml.empty());
  EXPECT_TRUE(refused_with(total, "mime.zip_bomb"));

  // Too many entries.
  MimeLimits few;
  few.max_zip_entries = 10;
  std::vector<ZipFile> many;
  for (int i = 0; i < 50; ++i) many.push_back({"f" + std::to_string(i) + ".xml", "<a/>"});
  Message lots = parse_message(zip_mail(make_zip(many)), few);
  EXPECT_TRUE(lots.xml.empty());
  EXPECT_TRUE(refused_with(lots, "mime.zip_too_many_entries"));
}

TEST(MimeZip, EncryptedAndCorruptZipsAreRefused) {
  std::string enc = make_zip({{"envio.xml", kXml, "secreto"}, {"plain.xml", "<RespuestaDTE/>"}});
  Message e = parse_message(zip_mail(enc));
  ASSERT_TRUE(e.ok);
  EXPECT_TRUE(refused_with(e, "mime.zip_encrypted"));
  ASSERT_EQ(e.xml.size(), 1u);  // the entry without a password is still read
  EXPECT_EQ(e.xml[0].filename, "plain.xml");

  std::string good = make_zip({{"envio.xml", kXml, nullptr, true}});
  std::string truncated = good.substr(0, good.size() / 2);
  std::string flipped = good;
  flipped[flipped.size() / 3] ^= 0x5a;  // inside the stored data: CRC mismatch
  for (const std::string& bad : {truncated, flipped, std::string("PK\x03\x04"), std::string("PK\x05\x06garbage")}) {
    Message m = parse_message(zip_mail(bad));
    ASSERT_TRUE(m.ok);
    EXPECT_TRUE(m.xml.empty());
    EXPECT_TRUE(refused_with(m, "mime.zip_corrupt")) << (m.refused.empty() ? "" : m.refused[0].code);
  }
  // Random bytes named .zip never crash.
  std::string noise;
  for (int i = 0; i < 5000; ++i) noise += static_cast<char>((i * 7919) & 0xff);
  Message n = parse_message(zip_mail("PK\x03\x04" + noise));
  EXPECT_TRUE(n.xml.empty());
  EXPECT_FALSE(n.refused.empty());
}

TEST(MimeZip, MutatedArchivesNeverCrash) {
  // Deterministic byte flips, truncations and size-field lies over a small valid archive holding a
  // nested zip: every outcome is either XML found or a refusal with a reason.
  std::string inner = make_zip({{"in.xml", kXml}});
  std::string base = make_zip({{"envio.xml", kXml}, {"inner.zip", inner}, {"doc.pdf", "%PDF-1.4"}});
  std::uint32_t state = 12345;
  auto next = [&] { return state = state * 1103515245u + 12345u; };
  for (int i = 0; i < 400; ++i) {
    std::string z = base;
    int flips = 1 + static_cast<int>(next() % 4);
    for (int f = 0; f < flips; ++f) z[next() % z.size()] = static_cast<char>(next() >> 8);
    if (i % 7 == 0) z.resize(next() % z.size());
    Message m = parse_message(zip_mail(z));
    ASSERT_TRUE(m.ok);
    for (const auto& r : m.refused) EXPECT_FALSE(r.reason.empty()) << r.code;
    for (const auto& x : m.xml) EXPECT_TRUE(looks_like_xml(x.data));
  }
}
