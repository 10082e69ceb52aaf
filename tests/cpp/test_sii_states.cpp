// Every SII state and code the client maps (sii_client.hpp tables, state_table()): envelope states
// incl. books and the counts-less EPR of books/RVD, per-document states with their verdicts, and
// wsDTECorreo.reenvioCorreo codes. Offline; the same codes over HTTP against the simulator are in
// tests/python/test_sii_states.py.
#include <gtest/gtest.h>

#include <cctype>
#include <set>

#include "dte/sii_client.hpp"

using namespace dte;
using namespace dte::sii;

namespace {

std::string respuesta_xml(const std::string& hdr, const std::string& body = "") {
  return "<?xml version=\"1.0\" encoding=\"UTF-8\"?><SII:RESPUESTA xmlns:SII=\"http://www.sii.cl/XMLSchema\">"
         "<SII:RESP_HDR>" + hdr + "</SII:RESP_HDR>" +
         (body.empty() ? "" : "<SII:RESP_BODY>" + body + "</SII:RESP_BODY>") + "</SII:RESPUESTA>";
}

EnvelopeStatus est(const std::string& estado, EnvelopeKind kind, const std::string& body = "") {
  return interpret_est_up(
      parse_respuesta(respuesta_xml("<TRACKID>1</TRACKID><ESTADO>" + estado + "</ESTADO><GLOSA>g</GLOSA>", body)),
      kind);
}

std::string counts(int inf, int acc, int rech, int rep) {
  return "<TIPO_DOCTO>33</TIPO_DOCTO><INFORMADOS>" + std::to_string(inf) + "</INFORMADOS><ACEPTADOS>" +
         std::to_string(acc) + "</ACEPTADOS><RECHAZADOS>" + std::to_string(rech) + "</RECHAZADOS><REPAROS>" +
         std::to_string(rep) + "</REPAROS>";
}

MailResendResult mail(const std::string& estado) {
  return interpret_mail_resend(parse_respuesta(respuesta_xml("<ESTADO>" + estado + "</ESTADO><GLOSA>g</GLOSA>")));
}

}  // namespace

// Regression (certification helper's report): a book's / RVD's EPR has no per-type counts and
// used to raise sii.no_counts.
TEST(SiiStates, BookEprWithoutCountsIsAcceptedNotMalformed) {
  auto book = est("EPR", EnvelopeKind::kBook);
  EXPECT_EQ(book.state, EnvelopeState::kAccepted);
  EXPECT_TRUE(book.final);
  EXPECT_TRUE(book.counts.empty());
  auto any = est("EPR", EnvelopeKind::kAuto);
  EXPECT_EQ(any.state, EnvelopeState::kAccepted);
  EXPECT_TRUE(any.final);
  // An EnvioDTE's EPR must come with counts: EPR alone is not acceptance.
  try {
    est("EPR", EnvelopeKind::kDocuments);
    FAIL() << "expected sii.no_counts";
  } catch (const SiiMalformedAnswer& e) {
    EXPECT_EQ(e.code(), "sii.no_counts");
  }
  // With counts the kind does not matter.
  EXPECT_EQ(est("EPR", EnvelopeKind::kDocuments, counts(2, 1, 1, 0)).state, EnvelopeState::kRejected);
  EXPECT_EQ(est("EPR", EnvelopeKind::kBook, counts(2, 2, 0, 0)).state, EnvelopeState::kAccepted);
}

TEST(SiiStates, BookStates) {
  for (auto kind : {EnvelopeKind::kAuto, EnvelopeKind::kBook, EnvelopeKind::kDocuments}) {
    auto lok = est("LOK", kind);
    EXPECT_EQ(lok.state, EnvelopeState::kAccepted);
    EXPECT_TRUE(lok.final);
    for (const char* s : {"LRH", "LNC", "LRF", "LRS"}) {
      auto st = est(s, kind);
      EXPECT_EQ(st.state, EnvelopeState::kRejected) << s;
      EXPECT_TRUE(st.final) << s;
    }
  }
}

TEST(SiiStates, EveryUploadStateClassified) {
  for (const char* s : {"REC", "SOK", "CRT", "FOK", "PDR", "PRD"}) {
    auto st = est(s, EnvelopeKind::kDocuments);
    EXPECT_EQ(st.state, EnvelopeState::kInProgress) << s;
    EXPECT_FALSE(st.final) << s;
  }
  for (const char* s : {"RPR", "RLV"}) {
    auto st = est(s, EnvelopeKind::kDocuments, counts(4, 4, 0, 2));
    EXPECT_EQ(st.state, EnvelopeState::kAcceptedWithObjections) << s;
    EXPECT_TRUE(st.final);
    ASSERT_EQ(st.counts.size(), 1u);  // counts read with the objection states too
    EXPECT_EQ(st.counts[0].objections, 2);
    EXPECT_EQ(est(s, EnvelopeKind::kDocuments).state, EnvelopeState::kAcceptedWithObjections);
  }
  for (const char* s : {"RCH", "RCT", "RFR", "RSC", "RCS", "RCO", "VOF", "RPT"}) {
    auto st = est(s, EnvelopeKind::kDocuments);
    EXPECT_EQ(st.state, EnvelopeState::kRejected) << s;
    EXPECT_TRUE(st.final) << s;
  }
  EXPECT_THROW(est("QQQ", EnvelopeKind::kAuto), SiiMalformedAnswer);
}

TEST(SiiStates, DocumentVerdicts) {
  struct Row {
    const char* code;
    DocumentState state;
    bool final;
    const char* verdict;
  };
  const Row rows[] = {
      {"DOK", DocumentState::kReceived, true, "accepted"},
      {"DNK", DocumentState::kDataMismatch, true, "accepted_with_objections"},
      {"FAU", DocumentState::kNotReceived, false, "not_received"},
      {"FNA", DocumentState::kFolioNotAuthorized, true, "rejected"},
      {"FAN", DocumentState::kFolioAnnulled, true, "rejected"},
      {"EMP", DocumentState::kCompanyNotAuthorized, true, "rejected"},
      {"TMD", DocumentState::kModifiedByNote, true, "accepted"},
      {"TMC", DocumentState::kModifiedByNote, true, "accepted"},
      {"MMD", DocumentState::kModifiedByNote, true, "accepted"},
      {"MMC", DocumentState::kModifiedByNote, true, "accepted"},
      {"AND", DocumentState::kAnnulledByNote, true, "accepted"},
      {"ANC", DocumentState::kAnnulledByNote, true, "accepted"},
  };
  for (const auto& r : rows) {
    auto d = interpret_doc_state(r.code, "", "g");
    EXPECT_EQ(d.state, r.state) << r.code;
    EXPECT_EQ(d.final, r.final) << r.code;
    EXPECT_EQ(d.verdict, r.verdict) << r.code;
    EXPECT_FALSE(d.description.empty()) << r.code;
  }
}

TEST(SiiStates, MailResendCodes) {
  auto ok = mail("0");
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(ok.code, 0);
  EXPECT_FALSE(ok.description.empty());
  for (const char* s : {"104", "001", "002", "003"}) {
    try {
      mail(s);
      FAIL() << s;
    } catch (const SiiAuthError& e) {
      EXPECT_EQ(e.code(), "sii.token_expired") << s;
    }
  }
  const std::pair<const char*, const char*> rejected[] = {{"101", "sii.mail.bad_rut"},
                                                          {"102", "sii.mail.missing_data"},
                                                          {"105", "sii.mail.unknown_trackid"},
                                                          {"106", "sii.mail.not_authorized"},
                                                          {"114", "sii.mail.not_processed"}};
  for (const auto& [code, name] : rejected) {
    try {
      mail(code);
      FAIL() << code;
    } catch (const SiiRejected& e) {
      EXPECT_EQ(e.code(), name);
      EXPECT_EQ(e.sii_code(), code);
    }
  }
  for (const char* s : {"103", "107", "108", "110", "111", "112", "113"}) EXPECT_THROW(mail(s), SiiTransportError) << s;
  EXPECT_THROW(mail("999"), SiiMalformedAnswer);
}

TEST(SiiStates, TableIsCompleteAndConsistent) {
  std::set<std::string> seen;
  for (const auto& r : state_table()) {
    EXPECT_FALSE(r.meaning.empty()) << r.code;
    EXPECT_FALSE(r.verdict.empty()) << r.code;
    EXPECT_TRUE(seen.insert(r.service + "|" + r.code).second) << "duplicate row " << r.service << " " << r.code;
  }
  // Every envelope code in the table that is a plain state gets the table's verdict from the parser.
  for (const auto& r : state_table()) {
    if ((r.service != "estup" && r.service != "estup_book") || r.code.size() != 3 || r.verdict == "token" ||
        !std::isupper(static_cast<unsigned char>(r.code[0])))
      continue;
    auto kind = r.service == "estup_book" ? EnvelopeKind::kBook : EnvelopeKind::kDocuments;
    auto st = est(r.code, kind, r.code == "EPR" && kind == EnvelopeKind::kDocuments ? counts(1, 1, 0, 0) : "");
    EXPECT_EQ(to_string(st.state), r.verdict) << r.code;
    EXPECT_EQ(st.final, r.final) << r.code;
  }
  for (const auto& r : state_table()) {
    if (r.service != "estdte" || r.code.size() != 3 || !std::isupper(static_cast<unsigned char>(r.code[0]))) continue;
    auto d = interpret_doc_state(r.code, "", "");
    EXPECT_EQ(d.verdict, r.verdict) << r.code;
    EXPECT_EQ(d.final, r.final) << r.code;
  }
  for (const char* root : {"EnvioDTE", "EnvioBOLETA"}) EXPECT_EQ(envelope_kind_of_root(root), EnvelopeKind::kDocuments);
  for (const char* root : {"LibroCompraVenta", "LibroGuia", "ConsumoFolios"}) EXPECT_EQ(envelope_kind_of_root(root), EnvelopeKind::kBook);
  EXPECT_EQ(envelope_kind_from_string("book"), EnvelopeKind::kBook);
  EXPECT_THROW(envelope_kind_from_string("libro"), DteError);
}
