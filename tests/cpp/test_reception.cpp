#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "dte/envelope.hpp"
#include "dte/errors.hpp"
#include "dte/pipeline.hpp"
#include "dte/reception.hpp"
#include "dte/verify.hpp"
#include "dte/xml.hpp"
#include "signing_material.hpp"

using namespace dte;
using namespace dte::test;
using namespace dte::reception;

namespace {

constexpr const char* kCompany = "77123456-9";  // RUTRecep of dte_native/examples/33.json

std::string sign(int type, long long folio, const Caf& caf) {
  SignOptions o;
  return sign_document(example_input(type, folio), caf, cert(), o).xml;
}

std::string supplier_envelope(const std::vector<std::string>& dtes, const std::string& receiver = kCompany) {
  Caratula c;
  c.rut_emisor = kIssuer;
  c.rut_receptor = receiver;
  c.fch_resol = "2014-08-22";
  c.nro_resol = 80;
  return build_envelope(dtes, c, cert(), false);
}

ReceptionOptions options(const std::set<std::string>* known = nullptr) {
  ReceptionOptions o;
  o.company_rut = kCompany;
  o.keyring = &keyring();
  o.schemas = schemas();
  o.known = known;
  return o;
}

const Check* find(const std::vector<Check>& checks, const std::string& name, CheckStatus status) {
  for (const auto& c : checks)
    if (c.name == name && c.status == status) return &c;
  return nullptr;
}

}  // namespace

TEST(Reception, ClassifiesWhatArrives) {
  EXPECT_EQ(classify_xml(supplier_envelope({sign(33, 1, caf_for(33))})).kind, XmlKind::kEnvioDTE);
  EXPECT_EQ(classify_xml("<RespuestaDTE xmlns=\"http://www.sii.cl/SiiDte\"/>").kind, XmlKind::kRespuestaDTE);
  EXPECT_EQ(classify_xml("<EnvioRecibos xmlns=\"http://www.sii.cl/SiiDte\"/>").kind, XmlKind::kEnvioRecibos);
  EXPECT_EQ(classify_xml("<RESULTADO_ENVIO><IDENTIFICACION/></RESULTADO_ENVIO>").kind, XmlKind::kResultadoEnvio);
  EXPECT_EQ(classify_xml("<RECEPCIONDTE><STATUS>0</STATUS></RECEPCIONDTE>").kind, XmlKind::kResultadoEnvio);
  EXPECT_EQ(classify_xml("<EnvioDTE/>").kind, XmlKind::kOther);  // no SII namespace
  Classification xxe = classify_xml(
      "<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><a>&x;</a>");
  EXPECT_FALSE(xxe.readable);
  EXPECT_FALSE(xxe.reason.empty());
  EXPECT_FALSE(classify_xml("not xml").readable);
}

TEST(Reception, VerifiesAGoodEnvelopeAddressedToUs) {
  if (!schemas()) GTEST_SKIP() << "SII XSDs not found in " << xsd_dir();
  std::string env = supplier_envelope({sign(33, 11, caf_for(33)), sign(33, 12, caf_for(33))});
  ReceivedEnvelope r = verify_received(env, options());
  for (const auto& c : r.checks)
    EXPECT_NE(c.status, CheckStatus::kFail) << c.name << " " << c.subject << ": " << c.reason;
  EXPECT_TRUE(r.ok()) << r.glosa;
  EXPECT_EQ(r.state, kEnvioOk);
  EXPECT_EQ(r.set_id, "SetDoc");
  EXPECT_FALSE(r.digest.empty());
  EXPECT_EQ(r.rut_emisor, kIssuer);
  ASSERT_EQ(r.documents.size(), 2u);
  EXPECT_EQ(r.documents[0].key, std::string(kIssuer) + "|33|11");
  EXPECT_TRUE(find(r.documents[0].checks, "ted.caf", CheckStatus::kPass));
  EXPECT_TRUE(find(r.documents[0].checks, "receiver.rut", CheckStatus::kPass));
  EXPECT_NE(r.documents[0].xml.find("<DTE"), std::string::npos);
  EXPECT_GT(r.documents[0].doc.total, 0);
}

TEST(Reception, WrongReceiverDuplicatesAndUntrustedCaf) {
  if (!schemas()) GTEST_SKIP() << "SII XSDs not found in " << xsd_dir();
  std::string dte = sign(33, 21, caf_for(33));
  ReceivedEnvelope wrong = verify_received(supplier_envelope({dte}, "96790240-3"), options());
  EXPECT_EQ(wrong.state, kEnvioWrongReceiver);

  std::set<std::string> known{std::string(kIssuer) + "|33|21"};
  ReceivedEnvelope dup = verify_received(supplier_envelope({dte}), options(&known));
  EXPECT_EQ(dup.state, kEnvioRepeated);
  ASSERT_EQ(dup.documents.size(), 1u);
  EXPECT_EQ(dup.documents[0].state, kDteRepeated);

  // A CAF signed by someone else's "SII" key: the TED is consistent, the CAF is not SII's.
  testkit::KeyPair rogue = testkit::make_rsa_key(1024);
  testkit::CafSpec spec;
  spec.issuer_rut = kIssuer;
  spec.doc_type = 33;
  Caf rogue_caf = Caf::parse(testkit::make_caf(spec, rogue.private_pem));
  ReceivedEnvelope untrusted = verify_received(supplier_envelope({sign(33, 22, rogue_caf)}), options());
  ASSERT_EQ(untrusted.documents.size(), 1u);
  EXPECT_EQ(untrusted.documents[0].state, kDteOther);
  EXPECT_TRUE(find(untrusted.documents[0].checks, "ted.caf", CheckStatus::kFail));
  EXPECT_FALSE(untrusted.ok());

  // No keyring at all: the CAF cannot be trusted either.
  ReceptionOptions no_keys = options();
  no_keys.keyring = nullptr;
  EXPECT_FALSE(verify_received(supplier_envelope({dte}), no_keys).ok());
}

TEST(Reception, TamperedAndHostileInputIsAStateNeverAnException) {
  std::string env = supplier_envelope({sign(33, 31, caf_for(33))});
  std::string tampered = env;
  auto pos = tampered.find("<MntTotal>");
  ASSERT_NE(pos, std::string::npos);
  tampered.replace(pos + 10, 1, "9");
  ReceivedEnvelope t = verify_received(tampered, options());
  EXPECT_FALSE(t.ok());
  EXPECT_NE(t.state, kEnvioOk);

  ReceivedEnvelope xxe = verify_received(
      "<?xml version=\"1.0\"?><!DOCTYPE EnvioDTE [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;\">]>"
      "<EnvioDTE>&b;</EnvioDTE>", options());
  EXPECT_EQ(xxe.state, kEnvioUnreadable);
  EXPECT_EQ(verify_received("garbage", options()).state, kEnvioUnreadable);
  EXPECT_EQ(verify_received("<RespuestaDTE xmlns=\"http://www.sii.cl/SiiDte\"/>", options()).state, kEnvioOther);
}

TEST(Reception, ProcessMessageQuarantinesWithReasons) {
  if (!schemas()) GTEST_SKIP() << "SII XSDs not found in " << xsd_dir();
  std::string env = supplier_envelope({sign(33, 41, caf_for(33))});
  std::string good = mime::build_message("dte@proveedor.cl", "recepcion@empresa.cl", "DTE", "adjunto",
                                         {{"envio.xml", "application/xml", env}});
  MessageOutcome ok = process_message(good, options());
  ASSERT_EQ(ok.items.size(), 1u);
  if (schemas()) {
    EXPECT_EQ(ok.items[0].status, "verified") << ok.items[0].reason;
    EXPECT_FALSE(ok.quarantined) << ok.reason;
  }
  // The same envelope twice in one message: the second copy is a duplicate.
  std::string twice = mime::build_message("dte@proveedor.cl", "r@empresa.cl", "DTE", "",
                                          {{"a.xml", "application/xml", env}, {"b.xml", "application/xml", env}});
  MessageOutcome tw = process_message(twice, options());
  ASSERT_EQ(tw.items.size(), 2u);
  EXPECT_EQ(tw.items[1].envelope.state, kEnvioRepeated);
  EXPECT_TRUE(tw.quarantined);

  MessageOutcome none = process_message(
      mime::build_message("a@b.cl", "c@d.cl", "hola", "sin adjuntos", {}), options());
  EXPECT_TRUE(none.quarantined);
  EXPECT_EQ(none.reason, "no XML attachment");

  MessageOutcome hostile = process_message(
      mime::build_message("a@b.cl", "c@d.cl", "x", "",
                          {{"x.xml", "application/xml",
                            "<!DOCTYPE a [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><a>&x;</a>"}}),
      options());
  ASSERT_EQ(hostile.items.size(), 1u);
  EXPECT_EQ(hostile.items[0].status, "unreadable");
  EXPECT_TRUE(hostile.quarantined);
}

TEST(Reception, RespuestaDteIsSignedAndSchemaValid) {
  if (!schemas()) GTEST_SKIP() << "SII XSDs not found in " << xsd_dir();
  std::string env = supplier_envelope({sign(33, 51, caf_for(33))});
  ReceivedEnvelope r = verify_received(env, options());
  ResponseCaratula c;
  c.rut_responde = kCompany;
  c.rut_recibe = kIssuer;
  c.id_respuesta = 7;
  c.nmb_contacto = "Recepci\xC3\xB3n";
  c.mail_contacto = "dte@empresa.cl";
  std::string recep = build_recepcion_envio(c, {recepcion_from(r, "envio.xml", 1)}, cert());
  ValidationResult v = schemas()->validate_bytes(recep);
  EXPECT_TRUE(v.valid) << issues_text(v) << recep;
  VerifyOptions vo;
  vo.schemas = schemas();
  VerifyReport rep = verify_document(recep, vo);
  EXPECT_TRUE(rep.ok());
  for (const auto& ch : rep.checks) EXPECT_NE(ch.status, CheckStatus::kFail) << ch.name << ": " << ch.reason;
  if (have_xmlsec1()) {
    auto x = xmlsec1_verify(recep, "Resultado", "/*/*[local-name()='Signature']");
    EXPECT_EQ(x.status, 0) << x.output;
  }

  ResultadoDteItem acc;
  const auto& d = r.documents.at(0).doc;
  acc.tipo_dte = d.doc_type;
  acc.folio = d.folio;
  acc.fch_emis = d.issue_date;
  acc.rut_emisor = d.issuer_rut;
  acc.rut_recep = d.receiver_rut;
  acc.mnt_total = d.total;
  ResultadoDteItem rej = acc;
  rej.estado = 2;
  rej.glosa = "Mercaderia no corresponde a lo pedido";
  rej.cod_rch_dsc = -1;
  std::string result = build_resultado_dte(c, {acc, rej}, cert());
  v = schemas()->validate_bytes(result);
  EXPECT_TRUE(v.valid) << issues_text(v) << result;
  EXPECT_TRUE(verify_document(result, vo).ok());
  ResultadoDteItem no_reason = rej;
  no_reason.glosa.clear();
  EXPECT_THROW(build_resultado_dte(c, {no_reason}, cert()), DocumentError);
}

TEST(Reception, EnvioRecibosSignsEachReciboThenTheSet) {
  if (!schemas()) GTEST_SKIP() << "SII XSDs not found in " << xsd_dir();
  // The declaration is the XSD's fixed value, byte for byte.
  std::string xsd = read_file(fs::path(xsd_dir()) / "Recibos_v10.xsd");
  EXPECT_NE(xsd.find(std::string("fixed=\"") + kDeclaracionRecibo + "\""), std::string::npos);

  ResponseCaratula c;
  c.rut_responde = kCompany;
  c.rut_recibe = kIssuer;
  ReciboItem a{33, 61, "2025-03-04", kIssuer, kCompany, 119000, "Bodega Central", "", ""};
  ReciboItem b = a;
  b.folio = 62;
  std::string recibos = build_envio_recibos(c, {a, b}, cert());
  ValidationResult v = schemas()->validate_bytes(recibos);
  EXPECT_TRUE(v.valid) << issues_text(v) << recibos;
  VerifyOptions vo;
  vo.schemas = schemas();
  VerifyReport rep = verify_document(recibos, vo);
  int signatures = 0;
  for (const auto& ch : rep.checks) {
    EXPECT_NE(ch.status, CheckStatus::kFail) << ch.name << " " << ch.subject << ": " << ch.reason;
    if (ch.name.find(".signature") != std::string::npos && ch.name.find("target") == std::string::npos &&
        ch.status == CheckStatus::kPass)
      ++signatures;
  }
  EXPECT_EQ(signatures, 3);  // two receipts and the set
  if (have_xmlsec1()) {
    auto x = xmlsec1_verify(recibos, "SetRecibos DocumentoRecibo", "/*/*[local-name()='Signature']");
    EXPECT_EQ(x.status, 0) << x.output;
    x = xmlsec1_verify(recibos, "SetRecibos DocumentoRecibo",
                       "(//*[local-name()='Recibo'])[2]/*[local-name()='Signature']");
    EXPECT_EQ(x.status, 0) << x.output;
  }
  ReciboItem bad = a;
  bad.recinto.clear();
  EXPECT_THROW(build_envio_recibos(c, {bad}, cert()), DocumentError);
}
