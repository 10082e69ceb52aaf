// Every parser of SII's answers: SOAP envelopes with escaped XML inside (seed, token, QueryEst*,
// claims), the multipart DTEUpload answer, the boleta REST JSON, and EnvioDTE scanning.
// The first byte picks the parser so one corpus covers them all.
#include <cstdint>

#include "dte/sii_client.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const unsigned selector = data[0];
  const std::string_view body = dte_fuzz::as_view(data + 1, size - 1);
  namespace sii = dte::sii;
  dte_fuzz::guarded("fuzz_sii_answers", [&] {
    switch (selector % 9) {
      case 0: (void)sii::lenient_utf8(body); (void)sii::soap_fault_string(body); break;
      case 1: (void)sii::soap_return_text(body); break;
      case 2: {
        sii::Respuesta r = sii::parse_respuesta(body);
        (void)r.hdr("ESTADO");
        (void)r.first("GLOSA");
        (void)sii::interpret_est_up(r);
        break;
      }
      case 3: {
        // The way the client reads QueryEstUp: SOAP -> escaped XML -> Respuesta.
        sii::Respuesta r = sii::parse_respuesta(sii::soap_return_text(body));
        (void)sii::interpret_est_up(r);
        break;
      }
      case 4: {
        sii::UploadAnswer a = sii::parse_upload_answer(body);
        try {
          sii::check_upload_status(a);
        } catch (const dte::DteError&) {
        }
        break;
      }
      case 5: (void)sii::interpret_boleta_status(body); break;
      case 6: (void)sii::parse_claim_answer(body); break;
      case 7: (void)sii::parse_events_answer(body); (void)sii::parse_reception_date_answer(body); break;
      case 8: (void)sii::documents_of_envelope(body); break;
    }
  });
  return 0;
}
