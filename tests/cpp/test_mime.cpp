#include <gtest/gtest.h>

#include <string>

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
  EXPECT_EQ(m.refused[2].code, "mime.zip_unsupported");
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
