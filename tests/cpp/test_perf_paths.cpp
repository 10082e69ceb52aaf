// The fast paths of signing and verification (see signer.cpp / verify.cpp) must give exactly what
// xmlsec gives. Signing: the first signature with a certificate is made by xmlsec, later ones by
// the fast path; RSA PKCS#1 v1.5 is deterministic, so both must be the same bytes.
#include <gtest/gtest.h>

#include "dte/pipeline.hpp"
#include "dte/verify.hpp"
#include "signing_material.hpp"

using namespace dte;
using namespace dte::test;


TEST(PerfPaths, FastSigningIsByteIdenticalToXmlsec) {
  const SignOptions o = fixed_sign_options();
  for (int type : {33, 39, 52, 110}) {
    const std::string input = example_input(type, 11);
    ASSERT_FALSE(input.empty());
    const Certificate fresh = make_cert();  // unseen: its first signature goes through xmlsec
    SignedDte by_xmlsec = sign_document(input, caf_for(type), fresh, o);
    SignedDte by_fast_path = sign_document(input, caf_for(type), fresh, o);
    EXPECT_EQ(by_xmlsec.xml, by_fast_path.xml) << "type " << type;
    SignedDte again = sign_document(example_input(type, 12), caf_for(type), fresh, o);
    VerifyOptions vo;
    vo.keyring = &keyring();
    for (const auto* xml : {&by_fast_path.xml, &again.xml}) {
      VerifyReport r = verify_document(*xml, vo);
      EXPECT_TRUE(r.ok()) << "type " << type;
    }
    if (have_xmlsec1()) {
      auto r = xmlsec1_verify(again.xml, "Documento Liquidacion Exportaciones",
                              "/*/*[local-name()='Signature']");
      EXPECT_EQ(r.status, 0) << r.output;
    }
  }
}

TEST(PerfPaths, TamperedDocumentsStillFailWithXmlsecReasons) {
  const SignOptions o = fixed_sign_options();
  SignedDte dte = sign_document(example_input(33, 13), caf_for(33), cert(), o);
  VerifyOptions vo;
  vo.keyring = &keyring();
  // A changed amount: digest mismatch, explained as before.
  std::string tampered = dte.xml;
  auto at = tampered.find("<MntTotal>");
  ASSERT_NE(at, std::string::npos);
  tampered.insert(at + 10, "9");
  VerifyReport r = verify_document(tampered, vo);
  bool saw = false;
  for (const auto& c : r.checks)
    if (c.name == "dte.signature") {
      saw = true;
      EXPECT_EQ(c.status, CheckStatus::kFail);
      EXPECT_NE(c.reason.find("digest mismatch"), std::string::npos) << c.reason;
    }
  EXPECT_TRUE(saw);
  // A changed SignatureValue: RSA failure.
  std::string bad_sig = dte.xml;
  at = bad_sig.find("<SignatureValue>");
  ASSERT_NE(at, std::string::npos);
  char& ch = bad_sig[at + 16];
  ch = ch == 'A' ? 'B' : 'A';
  r = verify_document(bad_sig, vo);
  for (const auto& c : r.checks)
    if (c.name == "dte.signature") {
      EXPECT_EQ(c.status, CheckStatus::kFail);
      EXPECT_NE(c.reason.find("RSA signature"), std::string::npos) << c.reason;
    }
  // A comment inside the signed Documento does not change its canonical form (C14N without
  // comments), exactly as with xmlsec.
  std::string commented = dte.xml;
  at = commented.find("<Encabezado>");
  ASSERT_NE(at, std::string::npos);
  commented.insert(at, "<!-- note -->");
  EXPECT_TRUE(verify_document(commented, vo).ok());
}

// The direct C14N writer that verification tries first must agree with libxml2's C14N (what
// xmlsec uses) on every element it accepts; where it declines, libxml2 is used.
#include "../../cpp/src/dsig_internal.hpp"
#include "dte/xml.hpp"

namespace {

void expect_same_c14n(const std::string& xml, int* compared) {
  XmlDocPtr doc = parse_xml(xml);
  std::vector<xmlNode*> stack{xmlDocGetRootElement(doc.get())};
  while (!stack.empty()) {
    xmlNode* n = stack.back();
    stack.pop_back();
    if (n->type != XML_ELEMENT_NODE) continue;
    std::string fast, reference;
    ASSERT_TRUE(detail::c14n_subtree(doc.get(), n, &reference));
    if (detail::fast_c14n_subtree(n, &fast)) {
      EXPECT_EQ(fast, reference) << "element <" << n->name << "> of\n" << xml.substr(0, 300);
      ++*compared;
    }
    for (xmlNode* c = n->children; c; c = c->next) stack.push_back(c);
  }
}

}  // namespace

TEST(PerfPaths, DirectC14NMatchesLibxml2) {
  int compared = 0;
  const SignOptions o = fixed_sign_options();
  for (int type : {33, 39, 110}) {
    SignedDte dte = sign_document(example_input(type, 21), caf_for(type), cert(), o);
    expect_same_c14n(dte.xml, &compared);
  }
  const char* crafted[] = {
      "<a xmlns=\"urn:a\" xmlns:p=\"urn:p\" z=\"1\" p:y=\"2\" b=\"&quot;&lt;&amp;&#9;&#10;&#13;\">"
      "<b xmlns=\"\"><c xmlns=\"urn:c\" xmlns:p=\"urn:p\"><p:d p:x=\"1\" xmlns:q=\"urn:q\" q:w=\"0\" a=\"\"/>"
      "</c></b><![CDATA[x<y&z]]>t&#13;&gt;<!-- c --><e xmlns:p=\"urn:other\"><p:f/></e></a>",
      "<r xmlns=\"http://www.sii.cl/SiiDte\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">"
      "<DTE version=\"1.0\"><Documento ID=\"X\"><A>\xc3\xb1 &amp; \xe2\x82\xac</A><B/></Documento>"
      "<Signature xmlns=\"http://www.w3.org/2000/09/xmldsig#\"><SignedInfo><X/></SignedInfo>"
      "</Signature></DTE></r>",
      "<a xmlns:b=\"urn:b\" b:z=\"1\" xmlns:c=\"urn:a\" c:z=\"2\" y=\"3\"><b:x xmlns:b=\"urn:b2\"/></a>",
  };
  for (const char* x : crafted) expect_same_c14n(x, &compared);
  EXPECT_GT(compared, 50);
}
