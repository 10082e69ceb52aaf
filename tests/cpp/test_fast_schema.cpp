// The fast XSD validator (cpp/src/fast_schema.cpp) against libxml2's: on every document it must
// never accept what libxml2 rejects, and on the documents SII and we produce it must accept what
// libxml2 accepts (else it would only cost time). Documents: SII's samples and broken copies,
// our signed DTEs of every type and both envelopes, and a few thousand mutations of them.
#include <gtest/gtest.h>
#include <libxml/tree.h>

#include <cstdint>
#include <functional>
#include <random>

#include "../../cpp/src/fast_schema.hpp"
#include "dte/errors.hpp"
#include "signing_material.hpp"

using namespace dte;
using namespace dte::test;

namespace {

const SchemaSet& reference() {
  static SchemaSet set(xsd_dir(), false);
  return set;
}
const SchemaSet& fast_set() {
  static SchemaSet set(xsd_dir(), true);
  return set;
}

const char* xsd_for(const xmlNode* root) {
  const std::string_view name = reinterpret_cast<const char*>(root->name);
  if (name == "DTE") return "DTE_v10.xsd";
  if (name == "EnvioDTE") return "EnvioDTE_v10.xsd";
  if (name == "EnvioBOLETA") return "EnvioBOLETA_v11.xsd";
  if (name == "AEC") return "AEC_v10.xsd";
  return nullptr;
}

struct Verdicts {
  bool fast = false;
  bool libxml2 = false;
};

Verdicts judge(xmlDoc* doc) {
  const xmlNode* root = xmlDocGetRootElement(doc);
  const char* xsd = xsd_for(root);
  if (!xsd) return {};
  const detail::FastSchema* fast = fast_set().fast_schema(xsd);
  EXPECT_NE(fast, nullptr) << xsd << " has no fast tables";
  if (!fast) return {};
  return {detail::fast_accepts(*fast, root), reference().validate_with(doc, xsd).valid};
}

std::vector<std::string> own_documents() {
  std::vector<std::string> out;
  std::vector<std::string> others, boletas;
  long long folio = 20;
  for (int type : {33, 34, 39, 41, 43, 46, 52, 56, 61, 110, 111, 112}) {
    SignedDte d = sign_document(example_input(type, folio++), caf_for(type), cert(), fixed_sign_options());
    (type == 39 || type == 41 ? boletas : others).push_back(d.xml);
    if (type != 39 && type != 41) out.push_back(d.xml);  // a bare boleta has no global DTE
  }
  out.push_back(build_envelope(others, example_caratula(), cert(), false));
  out.push_back(build_envelope(boletas, example_caratula(), cert(), true));
  return out;
}

std::vector<fs::path> sample_files() {
  std::vector<fs::path> out;
  for (const char* sub : {"samples", "samples/broken"}) {
    const fs::path dir = fs::path(DTE_SHARED_DIR) / sub;
    if (!fs::is_directory(dir)) continue;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().extension() == ".xml") out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<xmlNode*> elements(xmlNode* root) {
  std::vector<xmlNode*> out;
  std::function<void(xmlNode*)> walk = [&](xmlNode* n) {
    for (; n; n = n->next) {
      if (n->type != XML_ELEMENT_NODE) continue;
      out.push_back(n);
      walk(n->children);
    }
  };
  walk(root);
  return out;
}

bool is_leaf(const xmlNode* n) {
  for (const xmlNode* c = n->children; c; c = c->next)
    if (c->type == XML_ELEMENT_NODE) return false;
  return true;
}

// Values that probe every lexical check: numbers in forms libxml2 accepts and we may not,
// bounds, digits, dates, base64, RUTs, lengths, whitespace.
const std::vector<std::string>& probe_values() {
  static const std::vector<std::string> v = {
      "", " ", "0", "-0", "1", "01", "+1", "1.", ".5", "1.50", "0.000", "-1", "1e3", "1,5",
      "19", "33", "999999999999999999", "9999999999999999999", "123456789012345678901234567890",
      "18446744073709551615", "18446744073709551616", "-9223372036854775809",
      "2020-02-29", "2021-02-29", "2020-13-01", "0000-01-01", "2020-1-01", " 2020-01-01",
      "2020-01-01T24:00:00", "2020-01-01T10:00:00Z", "2020-01-01T10:00:00", "2020-01-01T10:00:00.5",
      "1999-12-31T23:59:59", "ABC", "12345678-9", "12345678-K", "12345678-k", "1-", "-K",
      std::string(1001, 'x'), "\xC3\x91" "and\xC3\xBA", "A A", "\n5\n", "QUJD", "QUJD=",
      "QUI=", "QUJ=", "QR==", "Qg==", "Q===", "QU JD", "QU\nJD", "4OTWXyRl5fw3htjTyZXQtYEsC3D=",
      "#x", "#", "http://a b", "http://www.w3.org/2000/09/xmldsig#sha1", "1.0", "1.00", "2.0",
      "SHA1withRSA", "T1F1", "1x"};
  return v;
}

using Mutation = std::function<bool(xmlDoc*, xmlNode*)>;  // false: not applicable

std::vector<Mutation> mutations() {
  std::vector<Mutation> m;
  m.push_back([](xmlDoc*, xmlNode* n) {  // drop the element
    if (!n->parent || n->parent->type != XML_ELEMENT_NODE) return false;
    xmlUnlinkNode(n);
    xmlFreeNode(n);
    return true;
  });
  m.push_back([](xmlDoc*, xmlNode* n) {  // repeat it
    if (!n->parent || n->parent->type != XML_ELEMENT_NODE) return false;
    xmlAddNextSibling(n, xmlCopyNode(n, 1));
    return true;
  });
  m.push_back([](xmlDoc*, xmlNode* n) {  // move it last among its siblings
    if (!n->parent || n->parent->type != XML_ELEMENT_NODE || !n->next) return false;
    xmlNode* parent = n->parent;
    xmlUnlinkNode(n);
    xmlAddChild(parent, n);
    return true;
  });
  m.push_back([](xmlDoc*, xmlNode* n) {  // an unknown child
    xmlNewChild(n, n->ns, BAD_CAST "Extra", BAD_CAST "1");
    return true;
  });
  m.push_back([](xmlDoc*, xmlNode* n) {  // an undeclared attribute
    xmlNewProp(n, BAD_CAST "extra", BAD_CAST "1");
    return true;
  });
  m.push_back([](xmlDoc* d, xmlNode* n) {  // xsi:type and xsi:schemaLocation
    xmlNs* xsi = xmlSearchNsByHref(d, n, BAD_CAST "http://www.w3.org/2001/XMLSchema-instance");
    if (!xsi) xsi = xmlNewNs(n, BAD_CAST "http://www.w3.org/2001/XMLSchema-instance", BAD_CAST "xsi");
    xmlNewNsProp(n, xsi, BAD_CAST(n->parent && n->parent->type == XML_ELEMENT_NODE ? "type" : "schemaLocation"),
                 BAD_CAST "http://www.sii.cl/SiiDte EnvioDTE_v10.xsd");
    return true;
  });
  m.push_back([](xmlDoc*, xmlNode* n) {  // attributes: drop the first, or change its value
    if (!n->properties) return false;
    xmlAttr* a = n->properties;
    if (a->next) {
      xmlRemoveProp(a);
    } else {
      xmlSetProp(n, a->name, BAD_CAST "1.00");
    }
    return true;
  });
  m.push_back([](xmlDoc*, xmlNode* n) {  // text inside element-only content, or a child in text
    if (is_leaf(n)) {
      xmlNewChild(n, n->ns, BAD_CAST "Folio", BAD_CAST "1");
    } else {
      xmlAddChild(n, xmlNewText(BAD_CAST "stray"));
    }
    return true;
  });
  return m;
}

std::string describe(xmlNode* n) {
  std::string path;
  for (; n && n->type == XML_ELEMENT_NODE; n = n->parent)
    path = "/" + std::string(reinterpret_cast<const char*>(n->name)) + path;
  return path;
}

}  // namespace

TEST(FastSchema, CompilesEverySchemaOfTheSharedSet) {
  if (!have_xsds()) GTEST_SKIP() << "SII XSDs not found in '" << xsd_dir() << "'";
  for (const char* xsd : {"DTE_v10.xsd", "EnvioDTE_v10.xsd", "EnvioBOLETA_v11.xsd",
                          "RespuestaEnvioDTE_v10.xsd", "EnvioRecibos_v10.xsd", "AEC_v10.xsd",
                          "LibroGuia_v10.xsd", "ConsumoFolio_v10.xsd"}) {
    EXPECT_NE(fast_set().fast_schema(xsd), nullptr) << xsd;
  }
}

TEST(FastSchema, AgreesWithLibxml2OnSamplesAndOwnDocuments) {
  if (!have_xsds()) GTEST_SKIP() << "SII XSDs not found in '" << xsd_dir() << "'";
  int judged = 0;
  for (const fs::path& p : sample_files()) {
    XmlDocPtr doc;
    try {
      doc = parse_xml(read_file(p));
    } catch (const DteError&) {
      continue;
    }
    if (!xsd_for(xmlDocGetRootElement(doc.get()))) continue;
    const Verdicts v = judge(doc.get());
    EXPECT_EQ(v.fast, v.libxml2) << p.filename();
    ++judged;
  }
  for (const std::string& xml : own_documents()) {
    XmlDocPtr doc = parse_xml(xml);
    const Verdicts v = judge(doc.get());
    EXPECT_TRUE(v.libxml2) << xml.substr(0, 300);
    EXPECT_TRUE(v.fast) << xml.substr(0, 300);
    ++judged;
  }
  EXPECT_GE(judged, 12);
}

// Soundness: no mutation of a valid document may be accepted by the fast validator and refused
// by libxml2. Every element is mutated structurally, every leaf gets every probe value.
TEST(FastSchema, NeverAcceptsWhatLibxml2Refuses) {
  if (!have_xsds()) GTEST_SKIP() << "SII XSDs not found in '" << xsd_dir() << "'";
  std::vector<std::string> docs = own_documents();
  for (const fs::path& p : sample_files())
    if (p.filename().string().find("cleaned") != std::string::npos ||
        p.filename().string().rfind("AEC", 0) == 0)
      docs.push_back(read_file(p));
  const std::vector<Mutation> muts = mutations();
  int fast_accepted = 0, tried = 0;
  auto check = [&](const XmlDocPtr& copy, const std::string& what) {
    const Verdicts v = judge(copy.get());
    ++tried;
    if (v.fast) ++fast_accepted;
    EXPECT_FALSE(v.fast && !v.libxml2) << what;
  };
  for (std::size_t d = 0; d < docs.size(); ++d) {
    XmlDocPtr original = parse_xml(docs[d]);
    if (!xsd_for(xmlDocGetRootElement(original.get()))) continue;
    const std::size_t count = elements(xmlDocGetRootElement(original.get())).size();
    // Envelopes repeat their DTEs: their first 400 elements cover every kind of node.
    for (std::size_t i = 0; i < std::min<std::size_t>(count, 400); ++i) {
      for (std::size_t k = 0; k < muts.size(); ++k) {
        XmlDocPtr copy(xmlCopyDoc(original.get(), 1));
        xmlNode* target = elements(xmlDocGetRootElement(copy.get()))[i];
        const std::string where = describe(target);
        if (!muts[k](copy.get(), target)) continue;
        check(copy, "doc " + std::to_string(d) + " mutation " + std::to_string(k) + " at " + where);
      }
      XmlDocPtr probe(xmlCopyDoc(original.get(), 1));
      xmlNode* target = elements(xmlDocGetRootElement(probe.get()))[i];
      if (!is_leaf(target)) continue;
      for (const std::string& value : probe_values()) {
        XmlDocPtr copy(xmlCopyDoc(original.get(), 1));
        xmlNode* t = elements(xmlDocGetRootElement(copy.get()))[i];
        xmlNodeSetContentLen(t, BAD_CAST value.data(), static_cast<int>(value.size()));
        check(copy, "doc " + std::to_string(d) + " value '" + value.substr(0, 40) + "' at " +
                        describe(t));
      }
    }
  }
  // The probes must also reach the accepting side, or the test proves little.
  EXPECT_GT(fast_accepted, tried / 20) << fast_accepted << " of " << tried;
}
