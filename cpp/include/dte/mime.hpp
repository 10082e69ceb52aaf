// Internet mail (RFC 5322 / MIME) as suppliers send their DTEs: parsed with GMime 3, every XML
// attachment found in any nesting of multiparts and attached messages, transfer encodings
// (base64, quoted-printable) undone, headers decoded from any charset to UTF-8. Gzip and zip
// attachments are opened (zip with libzip, under the zip limits below) and the XML inside them
// taken as attachments of their own; names and paths inside an archive are never used as paths.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace dte::mime {

struct MimeLimits {
  std::size_t max_message_bytes = 64 * 1024 * 1024;
  std::size_t max_attachment_bytes = 32 * 1024 * 1024;  // decoded; an EnvioDTE of 2000 DTEs is ~20 MB
  int max_depth = 16;          // nesting of multiparts / message/rfc822
  std::size_t max_parts = 1000;
  // Zip attachments (libzip): beyond any of these the archive is refused as a zip bomb or
  // malformed, with the reason. Sizes are counted on what is actually inflated.
  std::size_t max_zip_entries = 200;                        // per archive, nested ones included
  std::size_t max_zip_total_bytes = 64 * 1024 * 1024;       // all entries of one attachment, inflated
  double max_zip_ratio = 200.0;                             // inflated / compressed, per entry...
  std::size_t zip_ratio_floor_bytes = 1024 * 1024;          // ...once it inflates beyond this
  int max_zip_depth = 1;                                    // zips inside the zip: one level
};

// One XML attachment, bytes exactly as decoded from the transfer encoding (the signatures inside
// depend on them, so no charset conversion: an XML document states its own encoding).
struct XmlAttachment {
  std::string filename;      // "" when the part has none
  std::string content_type;  // "application/xml", "text/xml", "application/octet-stream", ...
  std::string charset;       // the MIME charset parameter, "" when absent (informative only)
  std::string part_path;     // "1.2" style position, "1.2/zip:3" for entry 3 of a zip attachment
  std::string data;
};

// A part that looked like it should be read but was refused, with the reason.
struct RefusedPart {
  std::string filename;
  std::string content_type;
  std::string part_path;
  std::string code;    // "mime.oversized", "mime.not_xml", "mime.too_deep", "mime.zip_corrupt",
                       // "mime.zip_bomb", "mime.zip_encrypted", "mime.zip_too_many_entries", "mime.zip_nested"...
  std::string reason;  // plain English
};

struct Message {
  bool ok = false;       // false: the message as a whole could not be read (see error_*)
  std::string error_code;  // "mime.too_large", "mime.unparsable", "mime.too_many_parts"
  std::string error;
  std::string message_id;
  std::string from;      // bare address of the first From mailbox
  std::string reply_to;  // bare address of the first Reply-To mailbox, "" when absent
  std::string subject;   // decoded, UTF-8
  std::string date;      // ISO 8601 in UTC, "" when absent or unreadable
  std::vector<XmlAttachment> xml;
  std::vector<RefusedPart> refused;
  std::size_t part_count = 0;  // leaf parts seen
};

// Parses a raw message. Never throws for bad content (broken MIME is a Message with ok=false or
// with refused parts); thread-safe (GMime is initialised once).
Message parse_message(std::string_view raw, const MimeLimits& limits = {});

// Whether bytes look like an XML document (optional BOM, blanks, then '<' and a name, '?' or
// '!'). A cheap gate before the real parser.
bool looks_like_xml(std::string_view bytes);

// A message with attachments, for answers (RespuestaDTE, EnvioRecibos) and for tests: UTF-8
// headers encoded as RFC 2047 where needed, attachments base64.
struct OutgoingAttachment {
  std::string filename;
  std::string content_type = "application/xml";
  std::string data;
};
std::string build_message(std::string_view from, std::string_view to, std::string_view subject,
                          std::string_view text_body,
                          const std::vector<OutgoingAttachment>& attachments);

}  // namespace dte::mime
