// RCV rows against our documents, keyed on (issuer RUT, document type, folio).
#include <algorithm>
#include <cctype>
#include <map>
#include <tuple>

#include "dte/rcv.hpp"
#include "dte/rut.hpp"

namespace dte::rcv {
namespace {

using Key = std::tuple<std::string, int, long long>;

std::string norm_rut(const std::string& s) {
  auto r = Rut::try_parse(s);
  return r ? r->str() : s;
}

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::string key_text(const Key& k) {
  return std::get<0>(k) + " " + std::to_string(std::get<1>(k)) + "/" + std::to_string(std::get<2>(k));
}

ReconcileFinding base(const std::string& kind, const Key& k) {
  ReconcileFinding f;
  f.kind = kind;
  f.issuer_rut = std::get<0>(k);
  f.doc_type = std::get<1>(k);
  f.folio = std::get<2>(k);
  return f;
}

int kind_rank(const std::string& kind) {
  static const std::map<std::string, int> r = {{"duplicate", 0},       {"missing_in_rcv", 1},
                                               {"missing_locally", 2}, {"amount_mismatch", 3},
                                               {"tax_mismatch", 4},    {"state_mismatch", 5}};
  auto it = r.find(kind);
  return it == r.end() ? 9 : it->second;
}

}  // namespace

std::vector<ReconcileFinding> reconcile(const std::vector<Row>& rows,
                                        const std::vector<LocalDocument>& documents,
                                        const ReconcileOptions& options) {
  const std::string owner = options.owner_rut.empty() ? std::string() : norm_rut(options.owner_rut);
  std::vector<ReconcileFinding> out;
  std::map<Key, const Row*> sii;
  std::map<Key, const LocalDocument*> ours;

  for (const Row& row : rows) {
    std::string issuer = row.register_kind == "venta" ? owner : norm_rut(row.issuer_rut);
    Key k{issuer, row.doc_type, row.folio};
    if (!sii.emplace(k, &row).second) {
      auto f = base("duplicate", k);
      f.rcv_line = row.line;
      f.message = "document " + key_text(k) + " appears twice in the RCV (line " +
                  std::to_string(sii[k]->line) + " and " + std::to_string(row.line) + ")";
      out.push_back(f);
    }
  }
  for (const LocalDocument& doc : documents) {
    // Sales in the RCV carry no issuer (it is us): without owner_rut, match them on type+folio.
    std::string issuer = norm_rut(doc.issuer_rut);
    if (owner.empty() && !rows.empty() && rows.front().register_kind == "venta") issuer.clear();
    Key k{issuer, doc.doc_type, doc.folio};
    if (!ours.emplace(k, &doc).second) {
      auto f = base("duplicate", k);
      f.reference = doc.reference;
      f.message = "document " + key_text(k) + " appears twice among our documents";
      out.push_back(f);
    }
  }

  for (const auto& [k, doc] : ours) {
    auto it = sii.find(k);
    if (it == sii.end()) {
      auto f = base("missing_in_rcv", k);
      f.reference = doc->reference;
      f.message = "our document " + key_text(k) + " is not in SII's register";
      out.push_back(f);
      continue;
    }
    const Row& row = *it->second;
    auto compare = [&](const char* kind, const char* field, long long mine, long long theirs) {
      if (mine < 0) return;
      long long diff = mine > theirs ? mine - theirs : theirs - mine;
      if (diff <= options.tolerance) return;
      auto f = base(kind, k);
      f.field = field;
      f.ours = std::to_string(mine);
      f.sii = std::to_string(theirs);
      f.reference = doc->reference;
      f.rcv_line = row.line;
      f.message = std::string(field) + " of " + key_text(k) + " is " + f.ours + " here and " + f.sii +
                  " in SII's register";
      out.push_back(f);
    };
    compare("amount_mismatch", "MntExe", doc->exempt, row.exempt);
    compare("amount_mismatch", "MntNeto", doc->net, row.net);
    compare("tax_mismatch", "MntIVA", doc->vat, row.vat + row.vat_non_recoverable);
    compare("amount_mismatch", "MntTotal", doc->total, row.total);
    if (!doc->state.empty() && upper(doc->state) != row.state) {
      auto f = base("state_mismatch", k);
      f.field = "state";
      f.ours = upper(doc->state);
      f.sii = row.state;
      f.reference = doc->reference;
      f.rcv_line = row.line;
      f.message = key_text(k) + " is " + f.ours + " here and " + f.sii + " in SII's register";
      out.push_back(f);
    }
  }
  for (const auto& [k, row] : sii) {
    if (ours.count(k)) continue;
    auto f = base("missing_locally", k);
    f.rcv_line = row->line;
    f.sii = std::to_string(row->total);
    f.message = "SII's register has " + key_text(k) + " (" + row->counterpart_name + ", total " +
                f.sii + ") and we do not";
    out.push_back(f);
  }
  std::stable_sort(out.begin(), out.end(), [](const ReconcileFinding& a, const ReconcileFinding& b) {
    return std::tie(a.issuer_rut, a.doc_type, a.folio) < std::tie(b.issuer_rut, b.doc_type, b.folio) ||
           (std::tie(a.issuer_rut, a.doc_type, a.folio) == std::tie(b.issuer_rut, b.doc_type, b.folio) &&
            kind_rank(a.kind) < kind_rank(b.kind));
  });
  return out;
}

}  // namespace dte::rcv
