// A fast, accept-only XSD validator for SII's schemas.
//
// libxml2's validator is thorough and slow: it is about half the cost of verifying a received
// DTE. SII's XSDs use a small part of XML Schema (sequences and choices of elements with
// occurrence bounds, simple types restricted by length, digits, bounds, enumerations and one
// pattern, a few attributes, no wildcards), so this module compiles that part into tables and
// checks a document against them in the same SAX pass as everything else.
//
// It only ever says "valid" or "not sure": whenever a document is not plainly valid, or uses
// something the tables do not model (timezones, xsi:type, unusual lexical forms, a schema
// construct outside the subset), it says "not sure" and the caller validates with libxml2,
// which then also gives the error messages. Its verdict "valid" must imply libxml2's: every
// check is as strict as libxml2's or stricter (tests/cpp/test_fast_schema.cpp and
// fuzz/fuzz_fast_schema.cpp compare the two).
#pragma once
#include <libxml/tree.h>

#include "dte/handles.hpp"

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace dte::detail {

struct FastModel;  // the compiled tables

class FastSchema {
 public:
  // Compiles `xsd_file` (and what it includes or imports) from `files`, the XSDs of its folder
  // parsed by name, as SchemaSet's vetting of the include closure leaves them. nullptr when the
  // set uses a construct outside the subset (or a file is missing): libxml2 then validates alone.
  static std::unique_ptr<FastSchema> compile(const std::map<std::string, XmlDocPtr>& files,
                                             const std::string& xsd_file);
  ~FastSchema();
  FastSchema(const FastSchema&) = delete;
  FastSchema& operator=(const FastSchema&) = delete;

  const FastModel& model() const { return *model_; }

 private:
  explicit FastSchema(std::unique_ptr<FastModel> model);
  std::unique_ptr<FastModel> model_;
};

// One document's validation, fed by SAX2 events; reusable (reset) for the next document.
// Not thread-safe; the schema is shared read-only.
class FastValidator {
 public:
  FastValidator();
  ~FastValidator();
  // nullptr: inactive (no tables for this document's XSD) until the next reset.
  void reset(const FastSchema* schema);
  bool active() const { return schema_ != nullptr; }
  // SAX2 startElementNs data: `attrs` holds nb_attrs 5-tuples (local, prefix, uri, value,
  // value end). Returns false once the document is not plainly valid (then stays false).
  bool start(const xmlChar* local, const xmlChar* uri, int nb_attrs, const xmlChar** attrs);
  bool chars(std::string_view text);
  bool end();
  // After the root's end: true when the whole document is valid.
  bool accepted() const { return ok_ && done_; }

 private:
  struct Frame;
  const FastSchema* schema_ = nullptr;
  bool ok_ = true;
  bool done_ = false;
  std::vector<Frame> frames_;
  std::vector<int> kids_;       // child element names of the open elements, in order
  std::string text_;            // text of the open simple-typed element
  std::vector<std::string> ids_;  // xs:ID values seen (sorted on insert)
};

// Validates a parsed tree with FastValidator (for the DOM paths and the tests); true when valid.
bool fast_accepts(const FastSchema& schema, const xmlNode* root);

}  // namespace dte::detail
