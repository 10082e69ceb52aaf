// Offline parts of the SII client: answer parsing, code/state mapping, backoff, circuit breaker.
// The client against the simulator over real sockets is tested in tests/python/test_transport*.py.
#include <gtest/gtest.h>

#include "dte/sii_client.hpp"

using namespace dte;
using namespace dte::sii;

namespace {

std::string rpc(const std::string& op, const std::string& inner_escaped) {
  return "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope "
         "xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body><ns1:" + op +
         "Response xmlns:ns1=\"x\"><" + op + "Return>" + inner_escaped + "</" + op + "Return></ns1:" + op +
         "Response></soapenv:Body></soapenv:Envelope>";
}

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else if (c == '"') out += "&quot;";
    else out += c;
  }
  return out;
}

std::string respuesta(const std::string& hdr, const std::string& body = "") {
  return "<?xml version=\"1.0\" encoding=\"UTF-8\"?><SII:RESPUESTA xmlns:SII=\"http://www.sii.cl/XMLSchema\">"
         "<SII:RESP_HDR>" + hdr + "</SII:RESP_HDR>" +
         (body.empty() ? "" : "<SII:RESP_BODY>" + body + "</SII:RESP_BODY>") + "</SII:RESPUESTA>";
}

EnvelopeStatus est_up(const std::string& estado, const std::string& body = "", const std::string& extra = "") {
  std::string xml = respuesta("<TRACKID>123</TRACKID><ESTADO>" + estado + "</ESTADO><GLOSA>g</GLOSA>" + extra, body);
  return interpret_est_up(parse_respuesta(soap_return_text(rpc("getEstUp", escape(xml)))));
}

std::string counts(int inf, int acc, int rech, int rep) {
  return "<TIPO_DOCTO>33</TIPO_DOCTO><INFORMADOS>" + std::to_string(inf) + "</INFORMADOS><ACEPTADOS>" +
         std::to_string(acc) + "</ACEPTADOS><RECHAZADOS>" + std::to_string(rech) + "</RECHAZADOS><REPAROS>" +
         std::to_string(rep) + "</REPAROS>";
}

}  // namespace

TEST(SiiAnswers, SeedFromEscapedSoap) {
  std::string xml = respuesta("<ESTADO>00</ESTADO>", "<SEMILLA>000012345678</SEMILLA>");
  Respuesta r = parse_respuesta(soap_return_text(rpc("getSeed", escape(xml))));
  EXPECT_EQ(r.hdr("ESTADO"), "00");
  EXPECT_EQ(r.first("SEMILLA"), "000012345678");  // leading zeros kept
}

TEST(SiiAnswers, Latin1BytesUnderUtf8HeaderAreDecoded) {
  std::string xml = respuesta("<ESTADO>00</ESTADO><GLOSA>Recepci\xF3n</GLOSA>");
  std::string soap = rpc("getToken", escape(xml));  // Latin-1 byte 0xF3 while claiming UTF-8
  Respuesta r = parse_respuesta(soap_return_text(soap));
  EXPECT_EQ(r.hdr("GLOSA"), "Recepci\xC3\xB3n");
}

TEST(SiiAnswers, GarbageIsTransportError) {
  EXPECT_THROW(soap_return_text("<html><body>Oops</body></html>"), SiiTransportError);
  EXPECT_THROW(soap_return_text("Error 500"), SiiTransportError);
  EXPECT_THROW(soap_return_text(""), SiiTransportError);
  std::string full = rpc("getSeed", "x");
  try {
    soap_return_text(full.substr(0, full.size() / 2));
    FAIL() << "truncated XML accepted";
  } catch (const SiiTransportError& e) {
    EXPECT_EQ(e.code(), "sii.garbled_answer");
  }
}

TEST(SiiAnswers, SoapFault) {
  std::string fault = "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body>"
                      "<soapenv:Fault><faultcode>s</faultcode><faultstring>Error de Autenticacion: TOKEN invalido"
                      "</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>";
  auto f = soap_fault_string(fault);
  ASSERT_TRUE(f.has_value());
  EXPECT_NE(f->find("TOKEN invalido"), std::string::npos);
  EXPECT_FALSE(soap_fault_string(rpc("getSeed", "x")).has_value());
  EXPECT_THROW(soap_return_text(fault), SiiTransportError);
}

TEST(SiiAnswers, UploadStatusTable) {
  auto ans = [](const std::string& status, const std::string& extra = "") {
    return parse_upload_answer("<?xml version=\"1.0\"?>\n<RECEPCIONDTE><RUTSENDER>1-9</RUTSENDER><STATUS>" + status +
                               "</STATUS>" + extra + "</RECEPCIONDTE>");
  };
  UploadAnswer ok = ans("0", "<TRACKID>0000000042</TRACKID>");
  EXPECT_EQ(ok.track_id, "0000000042");
  EXPECT_NO_THROW(check_upload_status(ok));
  EXPECT_THROW(check_upload_status(ans("0")), SiiMalformedAnswer);  // 0 without TRACKID
  EXPECT_NO_THROW(check_upload_status(ans("99")));
  EXPECT_THROW(check_upload_status(ans("5")), SiiAuthError);
  for (const char* s : {"1", "2", "6", "7", "8"}) EXPECT_THROW(check_upload_status(ans(s)), SiiRejected) << s;
  for (const char* s : {"3", "9", "42"}) {
    try {
      check_upload_status(ans(s));
      FAIL() << s;
    } catch (const SiiTransportError& e) {
      EXPECT_FALSE(e.maybe_delivered()) << s;  // SII answered that it did not take the file
    }
  }
  UploadAnswer schema = ans("7", "<DETAIL><ERROR>LSX-00213 bad</ERROR><ERROR>LSX-2</ERROR></DETAIL>");
  try {
    check_upload_status(schema);
    FAIL();
  } catch (const SiiRejected& e) {
    EXPECT_EQ(e.code(), "sii.upload.schema");
    EXPECT_EQ(e.sii_code(), "7");
    ASSERT_EQ(e.details().size(), 2u);
    EXPECT_EQ(e.details()[0], "LSX-00213 bad");
  }
  EXPECT_THROW(parse_upload_answer("<html>x</html>"), SiiTransportError);
  EXPECT_THROW(parse_upload_answer("Error 500"), SiiTransportError);
  EXPECT_THROW(parse_upload_answer("<OTHER/>"), SiiMalformedAnswer);
  EXPECT_THROW(parse_upload_answer("<RECEPCIONDTE><STATUS>x</STATUS></RECEPCIONDTE>"), SiiMalformedAnswer);
}

TEST(SiiAnswers, EnvelopeStates) {
  for (const char* s : {"REC", "SOK", "CRT", "FOK", "PDR", "PRD"}) {
    auto st = est_up(s);
    EXPECT_EQ(st.state, EnvelopeState::kInProgress) << s;
    EXPECT_FALSE(st.final);
  }
  EXPECT_EQ(est_up("EPR", counts(3, 3, 0, 0)).state, EnvelopeState::kAccepted);
  EXPECT_EQ(est_up("EPR", counts(3, 3, 0, 1)).state, EnvelopeState::kAcceptedWithObjections);
  EXPECT_EQ(est_up("EPR", counts(3, 2, 1, 0)).state, EnvelopeState::kRejected);  // EPR is not acceptance
  EXPECT_EQ(est_up("EPR", counts(3, 2, 0, 0)).state, EnvelopeState::kRejected);
  EXPECT_EQ(est_up("EPR").state, EnvelopeState::kAccepted);  // no counts: books/RVD (see test_sii_states.cpp)
  auto e = est_up("EPR", counts(3, 3, 0, 0) + "<TIPO_DOCTO>61</TIPO_DOCTO><INFORMADOS>1</INFORMADOS>"
                                             "<ACEPTADOS>1</ACEPTADOS><RECHAZADOS>0</RECHAZADOS><REPAROS>0</REPAROS>");
  ASSERT_EQ(e.counts.size(), 2u);
  EXPECT_EQ(e.counts[1].doc_type, 61);
  EXPECT_EQ(est_up("RPR").state, EnvelopeState::kAcceptedWithObjections);
  EXPECT_EQ(est_up("RLV").state, EnvelopeState::kAcceptedWithObjections);
  for (const char* s : {"RCH", "RCT", "RFR", "RSC", "RCO", "VOF"}) EXPECT_EQ(est_up(s).state, EnvelopeState::kRejected);
  EXPECT_TRUE(est_up("RPT").duplicate);
  for (const char* s : {"001", "002", "003"}) EXPECT_THROW(est_up(s), SiiAuthError) << s;
  EXPECT_EQ(est_up("-11", "", "<ERR_CODE>2</ERR_CODE><SRV_CODE>0</SRV_CODE>").state, EnvelopeState::kInProgress);
  EXPECT_THROW(est_up("-11", "", "<ERR_CODE>1</ERR_CODE><SRV_CODE>1</SRV_CODE>"), SiiRejected);
  EXPECT_THROW(est_up("-3"), SiiRejected);
  EXPECT_THROW(est_up("ZZZ"), SiiMalformedAnswer);
}

TEST(SiiAnswers, DocumentStates) {
  EXPECT_EQ(interpret_doc_state("DOK", "0", "").state, DocumentState::kReceived);
  EXPECT_EQ(interpret_doc_state("DNK", "1", "").state, DocumentState::kDataMismatch);
  EXPECT_EQ(interpret_doc_state("FAU", "3", "").state, DocumentState::kNotReceived);
  EXPECT_EQ(interpret_doc_state("FNA", "4", "").state, DocumentState::kFolioNotAuthorized);
  EXPECT_EQ(interpret_doc_state("FAN", "5", "").state, DocumentState::kFolioAnnulled);
  EXPECT_EQ(interpret_doc_state("EMP", "6", "").state, DocumentState::kCompanyNotAuthorized);
  for (const char* s : {"TMD", "TMC", "MMD", "MMC"})
    EXPECT_EQ(interpret_doc_state(s, "", "").state, DocumentState::kModifiedByNote);
  for (const char* s : {"AND", "ANC"}) EXPECT_EQ(interpret_doc_state(s, "", "").state, DocumentState::kAnnulledByNote);
  EXPECT_THROW(interpret_doc_state("002", "", ""), SiiAuthError);
  EXPECT_THROW(interpret_doc_state("-3", "", ""), SiiRejected);
  EXPECT_THROW(interpret_doc_state("XYZ", "", ""), SiiMalformedAnswer);
}

TEST(SiiAnswers, BoletaStatusJson) {
  auto s = interpret_boleta_status(R"({"trackid": 123, "estado": "EPR",
      "estadistica": [{"tipo": 39, "informados": 2, "aceptados": 1, "rechazados": 1, "reparos": 0}],
      "detalle_rep_rech": [{"tipo": 39, "folio": 7, "estado": "RCH", "descripcion": "x",
                            "error": [{"codigo": "DTE-3-101", "descripcion": "folio repetido"}]}]})");
  EXPECT_EQ(s.track_id, "123");
  EXPECT_EQ(s.state, EnvelopeState::kRejected);
  ASSERT_EQ(s.details.size(), 1u);
  EXPECT_EQ(s.details[0].folio, 7);
  EXPECT_EQ(s.details[0].errors[0], "DTE-3-101: folio repetido");
  auto pending = interpret_boleta_status(R"({"estado": "EPR", "estadistica": [], "detalle_rep_rech": null})");
  EXPECT_EQ(pending.state, EnvelopeState::kInProgress);  // null detail: ask again
  EXPECT_THROW(interpret_boleta_status("{\"estado\": 1"), SiiTransportError);
  EXPECT_THROW(interpret_boleta_status("{}"), SiiMalformedAnswer);
}

TEST(SiiAnswers, Claims) {
  auto wrap = [](const std::string& op, const std::string& inner) {
    return "<S:Envelope xmlns:S=\"http://schemas.xmlsoap.org/soap/envelope/\"><S:Body><ns2:" + op +
           "Response xmlns:ns2=\"http://ws.registroreclamodte.diii.sdi.sii.cl\"><return>" + inner +
           "</return></ns2:" + op + "Response></S:Body></S:Envelope>";
  };
  auto c = parse_claim_answer(wrap("ingresarAceptacionReclamoDoc", "<codResp>8</codResp><descResp>Pasados</descResp>"));
  EXPECT_EQ(c.code, 8);
  EXPECT_FALSE(c.ok());
  EXPECT_TRUE(parse_claim_answer(wrap("x", "<codResp>7</codResp>")).ok());
  EXPECT_THROW(parse_claim_answer(wrap("x", "<codResp>-1</codResp>")), SiiTransportError);
  EXPECT_THROW(parse_claim_answer(wrap("x", "<descResp>no code</descResp>")), SiiMalformedAnswer);
  std::string ev = "<listaEventosDoc><codEvento>ACD</codEvento><descEvento>Acepta</descEvento>"
                   "<rutResponsable>11111111</rutResponsable><dvResponsable>1</dvResponsable>"
                   "<fechaEvento>01-01-2026 10:00:00</fechaEvento></listaEventosDoc>";
  auto one = parse_events_answer(wrap("listarEventosHistDoc", "<codResp>15</codResp>" + ev));
  ASSERT_EQ(one.events.size(), 1u);  // a single object is a list of one
  EXPECT_EQ(one.events[0].responsible_rut, "11111111-1");
  auto two = parse_events_answer(wrap("listarEventosHistDoc", "<codResp>15</codResp>" + ev + ev));
  EXPECT_EQ(two.events.size(), 2u);
  EXPECT_EQ(parse_reception_date_answer(wrap("consultarFechaRecepcionSii", "01-02-2026 10:11:12")),
            "01-02-2026 10:11:12");
}

TEST(SiiResilience, BackoffMath) {
  RetryPolicy p;
  p.base_delay_s = 0.5;
  p.max_delay_s = 3.0;
  p.jitter = 0.5;
  EXPECT_DOUBLE_EQ(backoff_delay(p, 1, 0.0), 0.0);
  EXPECT_DOUBLE_EQ(backoff_delay(p, 2, 0.0), 0.5);
  EXPECT_DOUBLE_EQ(backoff_delay(p, 3, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(backoff_delay(p, 4, 0.0), 2.0);
  EXPECT_DOUBLE_EQ(backoff_delay(p, 5, 0.0), 3.0);  // capped
  EXPECT_DOUBLE_EQ(backoff_delay(p, 9, 0.0), 3.0);
  EXPECT_DOUBLE_EQ(backoff_delay(p, 3, 1.0), 0.5);  // full jitter share removed
  for (double u = 0; u < 1; u += 0.1) {
    double d = backoff_delay(p, 3, u);
    EXPECT_GE(d, 0.5);
    EXPECT_LE(d, 1.0);
  }
  p.jitter = 0;
  EXPECT_DOUBLE_EQ(backoff_delay(p, 3, 0.7), 1.0);
}

TEST(SiiResilience, CircuitBreaker) {
  BreakerPolicy p;
  p.failure_threshold = 3;
  p.open_seconds = 10;
  CircuitBreaker b(p);
  EXPECT_TRUE(b.allow(0));
  b.record_failure(0);
  b.record_failure(1);
  b.record_success(1);  // a success resets the consecutive count
  b.record_failure(2);
  b.record_failure(2);
  EXPECT_EQ(b.state(2), BreakerState::kClosed);
  b.record_failure(3);
  EXPECT_EQ(b.state(3), BreakerState::kOpen);
  EXPECT_FALSE(b.allow(5));
  EXPECT_EQ(b.state(13), BreakerState::kHalfOpen);
  EXPECT_TRUE(b.allow(13));   // the one trial
  EXPECT_FALSE(b.allow(13));  // nobody else while it runs
  b.record_failure(14);       // trial failed: open again
  EXPECT_EQ(b.state(14), BreakerState::kOpen);
  EXPECT_FALSE(b.allow(20));
  EXPECT_TRUE(b.allow(24.5));
  b.record_success(24.5);
  EXPECT_EQ(b.state(24.5), BreakerState::kClosed);
  EXPECT_TRUE(b.allow(25));
}

TEST(SiiResilience, Environments) {
  auto c = default_endpoints(Environment::kCertification);
  EXPECT_EQ(c.soap_base, "https://maullin.sii.cl");
  EXPECT_EQ(c.boleta_envio_base, "https://pangal.sii.cl");
  auto p = default_endpoints(Environment::kProduction);
  EXPECT_EQ(p.claims_url, "https://ws1.sii.cl/WSREGISTRORECLAMODTE/registroreclamodteservice");
  EXPECT_EQ(p.boleta_api_base, "https://api.sii.cl");
  auto s = default_endpoints(Environment::kSimulator, "http://127.0.0.1:8080/");
  EXPECT_EQ(s.soap_base, "http://127.0.0.1:8080");
  EXPECT_EQ(s.boleta_api_base, "http://127.0.0.1:8080/apicert");
  EXPECT_EQ(s.boleta_envio_base, "http://127.0.0.1:8080/pangal");
  EXPECT_THROW(default_endpoints(Environment::kSimulator), DteError);
  EXPECT_EQ(environment_from_string("production"), Environment::kProduction);
  EXPECT_THROW(environment_from_string("mars"), DteError);
}

TEST(SiiTransport, NeedsCertificate) {
  ClientConfig cfg;
  cfg.environment = Environment::kSimulator;
  cfg.endpoints = default_endpoints(Environment::kSimulator, "http://127.0.0.1:9");
  cfg.retry.max_attempts = 2;
  cfg.retry.base_delay_s = 0.01;
  cfg.connect_timeout_s = 2;
  EXPECT_THROW(Client(cfg, nullptr), DteError);  // no certificate
}
