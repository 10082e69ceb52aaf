#include <gtest/gtest.h>

#include "dte/errors.hpp"
#include "dte/rut.hpp"
#include "dte/xml.hpp"

using namespace dte;

TEST(Rut, ParsesAndFormats) {
  auto r = Rut::parse("76.192.083-9");
  EXPECT_EQ(r.body(), 76192083u);
  EXPECT_EQ(r.str(), "76192083-9");
  EXPECT_EQ(r.formatted(), "76.192.083-9");
  EXPECT_EQ(Rut::parse("60803000k").str(), "60803000-K");
  EXPECT_EQ(Rut::check_digit(66666666), '6');
}

TEST(Rut, WrongCheckDigitIsSpecific) {
  try {
    Rut::parse("76192083-1");
    FAIL();
  } catch (const RutError& e) {
    EXPECT_EQ(e.code(), "rut.check_digit");
  }
  EXPECT_THROW(Rut::parse("abc"), RutError);
  EXPECT_FALSE(Rut::try_parse("").has_value());
}

TEST(Xml, RefusesDtdAndEntities) {
  const char* xxe =
      "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><r>&x;</r>";
  try {
    parse_xml(xxe);
    FAIL();
  } catch (const XmlSyntaxError& e) {
    EXPECT_EQ(e.code(), "xml.dtd_forbidden");
  }
  std::string laughs = "<!DOCTYPE l [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;\">]><l>&b;</l>";
  EXPECT_THROW(parse_xml(laughs), XmlSyntaxError);
}

TEST(Xml, BoundsDepthAndSize) {
  std::string deep;
  for (int i = 0; i < 100; ++i) deep += "<a>";
  for (int i = 0; i < 100; ++i) deep += "</a>";
  EXPECT_THROW(parse_xml(deep), XmlSyntaxError);
  ParseLimits small;
  small.max_bytes = 10;
  EXPECT_THROW(parse_xml("<a>0123456789</a>", small), XmlSyntaxError);
  EXPECT_THROW(parse_xml("<a><b></a>"), XmlSyntaxError);
}

TEST(Xml, DuplicateIdsAreRefused) {
  auto doc = parse_xml("<r><a ID=\"x\"/><b ID=\"x\"/></r>");
  EXPECT_THROW(register_ids(doc.get()), XmlSyntaxError);
}

TEST(Xml, Latin1AndFlatten) {
  EXPECT_EQ(to_latin1("Informática"), std::string("Inform\xE1tica"));
  EXPECT_EQ(from_latin1("Inform\xE1tica"), "Informática");
  EXPECT_EQ(to_latin1("a€b"), "a?b");
  EXPECT_THROW(to_latin1("a€b", true), DocumentError);
  EXPECT_EQ(flatten_xml("<a>\n  <b>x y</b>\n</a>"), "<a><b>x y</b></a>");
  EXPECT_EQ(truncate_chars("ñandú feliz", 5), "ñandú");
  EXPECT_EQ(base64_decode(base64_encode("hello world")), "hello world");
  EXPECT_EQ(escape_text("A&B <c>"), "A&amp;B &lt;c&gt;");
}
