// Element order, kinds and lengths of the Documento variants, transcribed from SII's
// DTE_v10.xsd (Documento, Liquidacion, Exportaciones) and EnvioBOLETA_v11.xsd (boleta
// Documento). The XML builder walks these trees, so the output follows the XSD sequence and
// an input key that is not here is a typo, not data to drop. TED and TmstFirma are left out:
// insert_ted() adds them.
#include "document_internal.hpp"

namespace dte::detail {
namespace {

// Node::find's hash: the length and four of the characters (first, second, middle, last),
// mixed. Element names are short and differ there; hashing every byte cost more than the rest
// of a lookup, and a collision only costs one more comparison of the whole name.
std::uint32_t name_hash(std::string_view name) noexcept {
  const std::size_t n = name.size();
  if (n == 0) return 0;
  auto at = [&](std::size_t i) { return static_cast<std::uint32_t>(static_cast<unsigned char>(name[i])); };
  std::uint32_t h = at(0) | at(n > 1 ? 1 : 0) << 8 | at(n / 2) << 16 | at(n - 1) << 24;
  h ^= static_cast<std::uint32_t>(n) * 0x9E3779B1u;
  h *= 0x85EBCA6Bu;
  return h ^ (h >> 15);
}

Node G(const char* name, int min, int max, std::vector<Node> children) {
  // At most half full, so that a miss (an unknown key) ends soon at an empty slot. A repeated
  // name would be found at its first place, as a walk over `children` finds it.
  std::size_t size = 8;
  while (size < 2 * children.size()) size *= 2;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> slots(size, {0, 0});
  for (std::size_t i = 0; i < children.size(); ++i) {
    const std::uint32_t h = name_hash(children[i].name);
    std::size_t s = h & (size - 1);
    while (slots[s].second != 0) s = (s + 1) & (size - 1);
    slots[s] = {h, static_cast<std::uint32_t>(i + 1)};
  }
  return Node{name, min, max, Kind::kGroup, 0, 0, false, std::move(children), std::move(slots),
              std::strlen(name)};
}
Node L(const char* name, int min, int max, Kind kind, int max_len, int frac, bool positive) {
  return Node{name, min, max, kind, max_len, frac, positive, {}, {}, std::strlen(name)};
}
constexpr Kind kText = Kind::kText;
constexpr Kind kInt = Kind::kInt;
constexpr Kind kDec = Kind::kDec;
constexpr Kind kDate = Kind::kDate;

Node make_documento() {
  return
G("Documento", 1, 1, {
    G("Encabezado", 1, 1, {
      G("IdDoc", 1, 1, {
        L("TipoDTE", 1, 1, kInt, 0, 0, true),
        L("Folio", 1, 1, kInt, 0, 0, true),
        L("FchEmis", 1, 1, kDate, 0, 0, false),
        L("IndNoRebaja", 0, 1, kInt, 0, 0, true),
        L("TipoDespacho", 0, 1, kInt, 0, 0, true),
        L("IndTraslado", 0, 1, kInt, 0, 0, true),
        L("TpoImpresion", 0, 1, kText, 0, 0, false),
        L("IndServicio", 0, 1, kInt, 0, 0, true),
        L("MntBruto", 0, 1, kInt, 0, 0, false),
        L("TpoTranCompra", 0, 1, kInt, 0, 0, false),
        L("TpoTranVenta", 0, 1, kInt, 0, 0, true),
        L("FmaPago", 0, 1, kInt, 0, 0, true),
        L("FmaPagExp", 0, 1, kInt, 0, 0, true),
        L("FchCancel", 0, 1, kDate, 0, 0, false),
        L("MntCancel", 0, 1, kInt, 0, 0, false),
        L("SaldoInsol", 0, 1, kInt, 0, 0, false),
        G("MntPagos", 0, 30, {
          L("FchPago", 1, 1, kDate, 0, 0, false),
          L("MntPago", 1, 1, kInt, 0, 0, false),
          L("GlosaPagos", 0, 1, kText, 40, 0, false)}),
        L("PeriodoDesde", 0, 1, kDate, 0, 0, false),
        L("PeriodoHasta", 0, 1, kDate, 0, 0, false),
        L("MedioPago", 0, 1, kText, 0, 0, false),
        L("TpoCtaPago", 0, 1, kText, 0, 0, false),
        L("NumCtaPago", 0, 1, kText, 20, 0, false),
        L("BcoPago", 0, 1, kText, 40, 0, false),
        L("TermPagoCdg", 0, 1, kText, 4, 0, false),
        L("TermPagoGlosa", 0, 1, kText, 100, 0, false),
        L("TermPagoDias", 0, 1, kInt, 0, 0, true),
        L("FchVenc", 0, 1, kDate, 0, 0, false)}),
      G("Emisor", 1, 1, {
        L("RUTEmisor", 1, 1, kText, 10, 0, false),
        L("RznSoc", 1, 1, kText, 100, 0, false),
        L("GiroEmis", 1, 1, kText, 80, 0, false),
        L("Telefono", 0, 2, kText, 20, 0, false),
        L("CorreoEmisor", 0, 1, kText, 80, 0, false),
        L("Acteco", 1, 4, kInt, 0, 0, true),
        G("GuiaExport", 0, 1, {
          L("CdgTraslado", 0, 1, kInt, 0, 0, true),
          L("FolioAut", 0, 1, kInt, 0, 0, false),
          L("FchAut", 0, 1, kDate, 0, 0, false)}),
        L("Sucursal", 0, 1, kText, 20, 0, false),
        L("CdgSIISucur", 0, 1, kInt, 0, 0, true),
        L("DirOrigen", 0, 1, kText, 70, 0, false),
        L("CmnaOrigen", 0, 1, kText, 20, 0, false),
        L("CiudadOrigen", 0, 1, kText, 20, 0, false),
        L("CdgVendedor", 0, 1, kText, 60, 0, false),
        L("IdAdicEmisor", 0, 1, kText, 20, 0, false)}),
      L("RUTMandante", 0, 1, kText, 10, 0, false),
      G("Receptor", 1, 1, {
        L("RUTRecep", 1, 1, kText, 10, 0, false),
        L("CdgIntRecep", 0, 1, kText, 20, 0, false),
        L("RznSocRecep", 1, 1, kText, 100, 0, false),
        G("Extranjero", 0, 1, {
          L("NumId", 0, 1, kText, 20, 0, false),
          L("Nacionalidad", 0, 1, kText, 3, 0, false)}),
        L("GiroRecep", 0, 1, kText, 40, 0, false),
        L("Contacto", 0, 1, kText, 80, 0, false),
        L("CorreoRecep", 0, 1, kText, 80, 0, false),
        L("DirRecep", 0, 1, kText, 70, 0, false),
        L("CmnaRecep", 0, 1, kText, 20, 0, false),
        L("CiudadRecep", 0, 1, kText, 20, 0, false),
        L("DirPostal", 0, 1, kText, 70, 0, false),
        L("CmnaPostal", 0, 1, kText, 20, 0, false),
        L("CiudadPostal", 0, 1, kText, 20, 0, false)}),
      L("RUTSolicita", 0, 1, kText, 10, 0, false),
      G("Transporte", 0, 1, {
        L("Patente", 0, 1, kText, 8, 0, false),
        L("RUTTrans", 0, 1, kText, 10, 0, false),
        G("Chofer", 0, 1, {
          L("RUTChofer", 1, 1, kText, 10, 0, false),
          L("NombreChofer", 1, 1, kText, 30, 0, false)}),
        L("DirDest", 0, 1, kText, 70, 0, false),
        L("CmnaDest", 0, 1, kText, 20, 0, false),
        L("CiudadDest", 0, 1, kText, 20, 0, false),
        G("Aduana", 0, 1, {
          L("CodModVenta", 0, 1, kInt, 0, 0, true),
          L("CodClauVenta", 0, 1, kInt, 0, 0, true),
          L("TotClauVenta", 0, 1, kDec, 0, 2, true),
          L("CodViaTransp", 0, 1, kInt, 0, 0, true),
          L("NombreTransp", 0, 1, kText, 40, 0, false),
          L("RUTCiaTransp", 0, 1, kText, 10, 0, false),
          L("NomCiaTransp", 0, 1, kText, 40, 0, false),
          L("IdAdicTransp", 0, 1, kText, 20, 0, false),
          L("Booking", 0, 1, kText, 20, 0, false),
          L("Operador", 0, 1, kText, 20, 0, false),
          L("CodPtoEmbarque", 0, 1, kInt, 0, 0, true),
          L("IdAdicPtoEmb", 0, 1, kText, 20, 0, false),
          L("CodPtoDesemb", 0, 1, kInt, 0, 0, true),
          L("IdAdicPtoDesemb", 0, 1, kText, 20, 0, false),
          L("Tara", 0, 1, kInt, 0, 0, true),
          L("CodUnidMedTara", 0, 1, kInt, 0, 0, true),
          L("PesoBruto", 0, 1, kDec, 0, 2, false),
          L("CodUnidPesoBruto", 0, 1, kInt, 0, 0, true),
          L("PesoNeto", 0, 1, kDec, 0, 2, false),
          L("CodUnidPesoNeto", 0, 1, kInt, 0, 0, true),
          L("TotItems", 0, 1, kInt, 0, 0, true),
          L("TotBultos", 0, 1, kInt, 0, 0, true),
          G("TipoBultos", 0, 10, {
            L("CodTpoBultos", 0, 1, kInt, 0, 0, true),
            L("CantBultos", 0, 1, kInt, 0, 0, true),
            L("Marcas", 0, 1, kText, 255, 0, false),
            L("IdContainer", 0, 1, kText, 25, 0, false),
            L("Sello", 0, 1, kText, 20, 0, false),
            L("EmisorSello", 0, 1, kText, 70, 0, false)}),
          L("MntFlete", 0, 1, kDec, 0, 4, true),
          L("MntSeguro", 0, 1, kDec, 0, 4, true),
          L("CodPaisRecep", 0, 1, kInt, 0, 0, true),
          L("CodPaisDestin", 0, 1, kInt, 0, 0, true)})}),
      G("Totales", 1, 1, {
        L("MntNeto", 0, 1, kInt, 0, 0, false),
        L("MntExe", 0, 1, kInt, 0, 0, false),
        L("MntBase", 0, 1, kInt, 0, 0, false),
        L("MntMargenCom", 0, 1, kInt, 0, 0, false),
        L("TasaIVA", 0, 1, kDec, 0, 2, true),
        L("IVA", 0, 1, kInt, 0, 0, false),
        L("IVAProp", 0, 1, kInt, 0, 0, false),
        L("IVATerc", 0, 1, kInt, 0, 0, false),
        G("ImptoReten", 0, 20, {
          L("TipoImp", 1, 1, kText, 0, 0, false),
          L("TasaImp", 0, 1, kDec, 0, 2, true),
          L("MontoImp", 1, 1, kInt, 0, 0, true)}),
        L("IVANoRet", 0, 1, kInt, 0, 0, true),
        L("CredEC", 0, 1, kInt, 0, 0, false),
        L("GrntDep", 0, 1, kInt, 0, 0, false),
        G("Comisiones", 0, 1, {
          L("ValComNeto", 0, 1, kInt, 0, 0, false),
          L("ValComExe", 0, 1, kInt, 0, 0, false),
          L("ValComIVA", 0, 1, kInt, 0, 0, false)}),
        L("MntTotal", 1, 1, kInt, 0, 0, false),
        L("MontoNF", 0, 1, kInt, 0, 0, false),
        L("MontoPeriodo", 0, 1, kInt, 0, 0, false),
        L("SaldoAnterior", 0, 1, kInt, 0, 0, false),
        L("VlrPagar", 0, 1, kInt, 0, 0, false)}),
      G("OtraMoneda", 0, 1, {
        L("TpoMoneda", 1, 1, kText, 0, 0, false),
        L("TpoCambio", 0, 1, kDec, 0, 4, true),
        L("MntNetoOtrMnda", 0, 1, kDec, 0, 4, true),
        L("MntExeOtrMnda", 0, 1, kDec, 0, 4, true),
        L("MntFaeCarneOtrMnda", 0, 1, kDec, 0, 4, true),
        L("MntMargComOtrMnda", 0, 1, kDec, 0, 4, true),
        L("IVAOtrMnda", 0, 1, kDec, 0, 4, true),
        G("ImpRetOtrMnda", 0, 20, {
          L("TipoImpOtrMnda", 1, 1, kText, 0, 0, false),
          L("TasaImpOtrMnda", 0, 1, kDec, 0, 2, true),
          L("VlrImpOtrMnda", 1, 1, kDec, 0, 4, true)}),
        L("IVANoRetOtrMnda", 0, 1, kDec, 0, 4, true),
        L("MntTotOtrMnda", 1, 1, kDec, 0, 4, true)})}),
    G("Detalle", 1, 60, {
      L("NroLinDet", 1, 1, kInt, 0, 0, true),
      G("CdgItem", 0, 5, {
        L("TpoCodigo", 1, 1, kText, 10, 0, false),
        L("VlrCodigo", 1, 1, kText, 35, 0, false)}),
      L("IndExe", 0, 1, kInt, 0, 0, true),
      G("Retenedor", 0, 1, {
        L("IndAgente", 1, 1, kText, 0, 0, false),
        L("MntBaseFaena", 0, 1, kInt, 0, 0, false),
        L("MntMargComer", 0, 1, kInt, 0, 0, false),
        L("PrcConsFinal", 0, 1, kInt, 0, 0, false)}),
      L("NmbItem", 1, 1, kText, 80, 0, false),
      L("DscItem", 0, 1, kText, 1000, 0, false),
      L("QtyRef", 0, 1, kDec, 0, 6, true),
      L("UnmdRef", 0, 1, kText, 4, 0, false),
      L("PrcRef", 0, 1, kDec, 0, 6, true),
      L("QtyItem", 0, 1, kDec, 0, 6, true),
      G("Subcantidad", 0, 5, {
        L("SubQty", 1, 1, kDec, 0, 6, true),
        L("SubCod", 1, 1, kText, 35, 0, false)}),
      L("FchElabor", 0, 1, kDate, 0, 0, false),
      L("FchVencim", 0, 1, kDate, 0, 0, false),
      L("UnmdItem", 0, 1, kText, 4, 0, false),
      L("PrcItem", 0, 1, kDec, 0, 6, true),
      G("OtrMnda", 0, 1, {
        L("PrcOtrMon", 1, 1, kDec, 0, 6, true),
        L("Moneda", 1, 1, kText, 3, 0, false),
        L("FctConv", 0, 1, kDec, 0, 4, true),
        L("DctoOtrMnda", 0, 1, kDec, 0, 4, true),
        L("RecargoOtrMnda", 0, 1, kDec, 0, 4, true),
        L("MontoItemOtrMnda", 0, 1, kDec, 0, 4, true)}),
      L("DescuentoPct", 0, 1, kDec, 0, 2, true),
      L("DescuentoMonto", 0, 1, kInt, 0, 0, true),
      G("SubDscto", 0, 5, {
        L("TipoDscto", 1, 1, kText, 0, 0, false),
        L("ValorDscto", 1, 1, kDec, 0, 2, true)}),
      L("RecargoPct", 0, 1, kDec, 0, 2, true),
      L("RecargoMonto", 0, 1, kInt, 0, 0, true),
      G("SubRecargo", 0, 5, {
        L("TipoRecargo", 1, 1, kText, 0, 0, false),
        L("ValorRecargo", 1, 1, kDec, 0, 2, true)}),
      L("CodImpAdic", 0, 2, kText, 0, 0, false),
      L("MontoItem", 1, 1, kInt, 0, 0, false)}),
    G("SubTotInfo", 0, 20, {
      L("NroSTI", 1, 1, kInt, 0, 0, true),
      L("GlosaSTI", 1, 1, kText, 40, 0, false),
      L("OrdenSTI", 0, 1, kInt, 0, 0, true),
      L("SubTotNetoSTI", 0, 1, kDec, 0, 2, true),
      L("SubTotIVASTI", 0, 1, kDec, 0, 2, true),
      L("SubTotAdicSTI", 0, 1, kDec, 0, 2, true),
      L("SubTotExeSTI", 0, 1, kDec, 0, 2, true),
      L("ValSubtotSTI", 0, 1, kDec, 0, 2, true),
      L("LineasDeta", 0, 60, kInt, 0, 0, true)}),
    G("DscRcgGlobal", 0, 20, {
      L("NroLinDR", 1, 1, kInt, 0, 0, true),
      L("TpoMov", 1, 1, kText, 0, 0, false),
      L("GlosaDR", 0, 1, kText, 45, 0, false),
      L("TpoValor", 1, 1, kText, 0, 0, false),
      L("ValorDR", 1, 1, kDec, 0, 2, true),
      L("ValorDROtrMnda", 0, 1, kDec, 0, 4, true),
      L("IndExeDR", 0, 1, kInt, 0, 0, true)}),
    G("Referencia", 0, 40, {
      L("NroLinRef", 1, 1, kInt, 0, 0, true),
      L("TpoDocRef", 1, 1, kText, 3, 0, false),
      L("IndGlobal", 0, 1, kInt, 0, 0, false),
      L("FolioRef", 1, 1, kText, 18, 0, false),
      L("RUTOtr", 0, 1, kText, 10, 0, false),
      L("FchRef", 1, 1, kDate, 0, 0, false),
      L("CodRef", 0, 1, kInt, 0, 0, true),
      L("RazonRef", 0, 1, kText, 90, 0, false)}),
    G("Comisiones", 0, 20, {
      L("NroLinCom", 1, 1, kInt, 0, 0, true),
      L("TipoMovim", 1, 1, kText, 0, 0, false),
      L("Glosa", 1, 1, kText, 60, 0, false),
      L("TasaComision", 0, 1, kDec, 0, 2, true),
      L("ValComNeto", 1, 1, kInt, 0, 0, false),
      L("ValComExe", 1, 1, kInt, 0, 0, false),
      L("ValComIVA", 0, 1, kInt, 0, 0, false)})});
}

Node make_liquidacion() {
  return
G("Liquidacion", 1, 1, {
    G("Encabezado", 1, 1, {
      G("IdDoc", 1, 1, {
        L("TipoDTE", 1, 1, kInt, 0, 0, true),
        L("Folio", 1, 1, kInt, 0, 0, true),
        L("FchEmis", 1, 1, kDate, 0, 0, false),
        L("IndServicio", 0, 1, kInt, 0, 0, true),
        L("MntBruto", 0, 1, kInt, 0, 0, false),
        L("TpoTranCompra", 0, 1, kInt, 0, 0, false),
        L("TpoTranVenta", 0, 1, kInt, 0, 0, true),
        L("FmaPago", 0, 1, kInt, 0, 0, true),
        L("FchCancel", 0, 1, kDate, 0, 0, false),
        L("MntCancel", 0, 1, kInt, 0, 0, false),
        L("SaldoInsol", 0, 1, kInt, 0, 0, false),
        G("MntPagos", 0, 30, {
          L("FchPago", 1, 1, kDate, 0, 0, false),
          L("MntPago", 1, 1, kInt, 0, 0, false),
          L("GlosaPagos", 0, 1, kText, 40, 0, false)}),
        L("PeriodoDesde", 0, 1, kDate, 0, 0, false),
        L("PeriodoHasta", 0, 1, kDate, 0, 0, false),
        L("MedioPago", 0, 1, kText, 0, 0, false),
        L("TpoCtaPago", 0, 1, kText, 0, 0, false),
        L("NumCtaPago", 0, 1, kText, 20, 0, false),
        L("BcoPago", 0, 1, kText, 40, 0, false),
        L("TermPagoCdg", 0, 1, kText, 4, 0, false),
        L("TermPagoGlosa", 0, 1, kText, 100, 0, false),
        L("TermPagoDias", 0, 1, kInt, 0, 0, true),
        L("FchVenc", 0, 1, kDate, 0, 0, false)}),
      G("Emisor", 1, 1, {
        L("RUTEmisor", 1, 1, kText, 10, 0, false),
        L("RznSoc", 1, 1, kText, 100, 0, false),
        L("GiroEmis", 1, 1, kText, 80, 0, false),
        L("Telefono", 0, 2, kText, 20, 0, false),
        L("CorreoEmisor", 0, 1, kText, 80, 0, false),
        L("Acteco", 1, 4, kInt, 0, 0, true),
        L("Sucursal", 0, 1, kText, 20, 0, false),
        L("CdgSIISucur", 0, 1, kInt, 0, 0, true),
        L("DirOrigen", 1, 1, kText, 70, 0, false),
        L("CmnaOrigen", 0, 1, kText, 20, 0, false),
        L("CiudadOrigen", 0, 1, kText, 20, 0, false),
        L("CdgVendedor", 0, 1, kText, 60, 0, false)}),
      G("Receptor", 1, 1, {
        L("RUTRecep", 1, 1, kText, 10, 0, false),
        L("CdgIntRecep", 0, 1, kText, 20, 0, false),
        L("RznSocRecep", 1, 1, kText, 100, 0, false),
        L("GiroRecep", 1, 1, kText, 40, 0, false),
        L("Contacto", 0, 1, kText, 80, 0, false),
        L("CorreoRecep", 0, 1, kText, 80, 0, false),
        L("DirRecep", 1, 1, kText, 70, 0, false),
        L("CmnaRecep", 1, 1, kText, 20, 0, false),
        L("CiudadRecep", 0, 1, kText, 20, 0, false),
        L("DirPostal", 0, 1, kText, 70, 0, false),
        L("CmnaPostal", 0, 1, kText, 20, 0, false),
        L("CiudadPostal", 0, 1, kText, 20, 0, false)}),
      G("Totales", 1, 1, {
        L("MntNeto", 0, 1, kInt, 0, 0, false),
        L("MntExe", 0, 1, kInt, 0, 0, false),
        L("TasaIVA", 0, 1, kDec, 0, 2, true),
        L("IVA", 0, 1, kInt, 0, 0, false),
        L("IVAProp", 0, 1, kInt, 0, 0, false),
        L("IVATerc", 0, 1, kInt, 0, 0, false),
        G("ImptoReten", 0, 20, {
          L("TipoImp", 1, 1, kText, 0, 0, false),
          L("TasaImp", 0, 1, kDec, 0, 2, true),
          L("MontoImp", 1, 1, kInt, 0, 0, false)}),
        G("Comisiones", 0, 1, {
          L("ValComNeto", 0, 1, kInt, 0, 0, false),
          L("ValComExe", 0, 1, kInt, 0, 0, false),
          L("ValComIVA", 0, 1, kInt, 0, 0, false)}),
        L("MntTotal", 1, 1, kInt, 0, 0, false),
        L("MontoPeriodo", 0, 1, kInt, 0, 0, false),
        L("SaldoAnterior", 0, 1, kInt, 0, 0, false),
        L("VlrPagar", 0, 1, kInt, 0, 0, false)})}),
    G("Detalle", 1, 60, {
      L("NroLinDet", 1, 1, kInt, 0, 0, true),
      G("CdgItem", 0, 5, {
        L("TpoCodigo", 1, 1, kText, 10, 0, false),
        L("VlrCodigo", 1, 1, kText, 35, 0, false)}),
      L("TpoDocLiq", 1, 1, kText, 3, 0, false),
      L("IndExe", 0, 1, kInt, 0, 0, true),
      L("NmbItem", 1, 1, kText, 80, 0, false),
      L("DscItem", 0, 1, kText, 1000, 0, false),
      L("QtyRef", 0, 1, kDec, 0, 6, true),
      L("UnmdRef", 0, 1, kText, 4, 0, false),
      L("PrcRef", 0, 1, kDec, 0, 6, true),
      L("QtyItem", 0, 1, kDec, 0, 6, true),
      G("Subcantidad", 0, 5, {
        L("SubQty", 1, 1, kDec, 0, 6, true),
        L("SubCod", 1, 1, kText, 35, 0, false)}),
      L("FchElabor", 0, 1, kDate, 0, 0, false),
      L("FchVencim", 0, 1, kDate, 0, 0, false),
      L("UnmdItem", 0, 1, kText, 4, 0, false),
      L("PrcItem", 0, 1, kDec, 0, 6, true),
      L("CodImpAdic", 0, 2, kText, 0, 0, false),
      L("MontoItem", 1, 1, kInt, 0, 0, false)}),
    G("SubTotInfo", 0, 20, {
      L("NroSTI", 1, 1, kInt, 0, 0, true),
      L("GlosaSTI", 1, 1, kText, 40, 0, false),
      L("OrdenSTI", 0, 1, kInt, 0, 0, true),
      L("SubTotNetoSTI", 0, 1, kDec, 0, 2, true),
      L("SubTotIVASTI", 0, 1, kDec, 0, 2, true),
      L("SubTotAdicSTI", 0, 1, kDec, 0, 2, true),
      L("SubTotExeSTI", 0, 1, kDec, 0, 2, true),
      L("ValSubtotSTI", 0, 1, kDec, 0, 2, true),
      L("LineasDeta", 0, 60, kInt, 0, 0, true)}),
    G("Referencia", 0, 40, {
      L("NroLinRef", 1, 1, kInt, 0, 0, true),
      L("TpoDocRef", 1, 1, kText, 3, 0, false),
      L("IndGlobal", 0, 1, kInt, 0, 0, false),
      L("FolioRef", 1, 1, kText, 18, 0, false),
      L("FchRef", 1, 1, kDate, 0, 0, false),
      L("CodRef", 0, 1, kInt, 0, 0, true),
      L("RazonRef", 0, 1, kText, 90, 0, false)}),
    G("Comisiones", 0, 20, {
      L("NroLinCom", 1, 1, kInt, 0, 0, true),
      L("TipoMovim", 1, 1, kText, 0, 0, false),
      L("Glosa", 1, 1, kText, 60, 0, false),
      L("TasaComision", 0, 1, kDec, 0, 2, true),
      L("ValComNeto", 1, 1, kInt, 0, 0, false),
      L("ValComExe", 1, 1, kInt, 0, 0, false),
      L("ValComIVA", 0, 1, kInt, 0, 0, false)})});
}

Node make_exportaciones() {
  return
G("Exportaciones", 1, 1, {
    G("Encabezado", 1, 1, {
      G("IdDoc", 1, 1, {
        L("TipoDTE", 1, 1, kInt, 0, 0, true),
        L("Folio", 1, 1, kInt, 0, 0, true),
        L("FchEmis", 1, 1, kDate, 0, 0, false),
        L("TipoDespacho", 0, 1, kInt, 0, 0, true),
        L("IndServicio", 0, 1, kInt, 0, 0, true),
        L("FmaPago", 0, 1, kInt, 0, 0, true),
        L("FmaPagExp", 0, 1, kInt, 0, 0, true),
        L("FchCancel", 0, 1, kDate, 0, 0, false),
        L("MntCancel", 0, 1, kInt, 0, 0, false),
        L("SaldoInsol", 0, 1, kInt, 0, 0, false),
        G("MntPagos", 0, 30, {
          L("FchPago", 1, 1, kDate, 0, 0, false),
          L("MntPago", 1, 1, kInt, 0, 0, false),
          L("GlosaPagos", 0, 1, kText, 40, 0, false)}),
        L("PeriodoDesde", 0, 1, kDate, 0, 0, false),
        L("PeriodoHasta", 0, 1, kDate, 0, 0, false),
        L("MedioPago", 0, 1, kText, 0, 0, false),
        L("TpoCtaPago", 0, 1, kText, 0, 0, false),
        L("NumCtaPago", 0, 1, kText, 20, 0, false),
        L("BcoPago", 0, 1, kText, 40, 0, false),
        L("TermPagoCdg", 0, 1, kText, 4, 0, false),
        L("TermPagoGlosa", 0, 1, kText, 100, 0, false),
        L("TermPagoDias", 0, 1, kInt, 0, 0, true),
        L("FchVenc", 0, 1, kDate, 0, 0, false)}),
      G("Emisor", 1, 1, {
        L("RUTEmisor", 1, 1, kText, 10, 0, false),
        L("RznSoc", 1, 1, kText, 100, 0, false),
        L("GiroEmis", 1, 1, kText, 80, 0, false),
        L("Telefono", 0, 2, kText, 20, 0, false),
        L("CorreoEmisor", 0, 1, kText, 80, 0, false),
        L("Acteco", 1, 4, kInt, 0, 0, true),
        L("Sucursal", 0, 1, kText, 20, 0, false),
        L("CdgSIISucur", 0, 1, kInt, 0, 0, true),
        L("CodAdicSucur", 0, 1, kText, 20, 0, false),
        L("DirOrigen", 0, 1, kText, 70, 0, false),
        L("CmnaOrigen", 0, 1, kText, 20, 0, false),
        L("CiudadOrigen", 0, 1, kText, 20, 0, false),
        L("CdgVendedor", 0, 1, kText, 60, 0, false),
        L("IdAdicEmisor", 0, 1, kText, 20, 0, false)}),
      G("Receptor", 1, 1, {
        L("RUTRecep", 1, 1, kText, 10, 0, false),
        L("CdgIntRecep", 0, 1, kText, 20, 0, false),
        L("RznSocRecep", 1, 1, kText, 100, 0, false),
        G("Extranjero", 0, 1, {
          L("NumId", 0, 1, kText, 20, 0, false),
          L("Nacionalidad", 0, 1, kText, 3, 0, false),
          L("IdAdicRecep", 0, 1, kText, 20, 0, false)}),
        L("GiroRecep", 0, 1, kText, 40, 0, false),
        L("Contacto", 0, 1, kText, 80, 0, false),
        L("CorreoRecep", 0, 1, kText, 80, 0, false),
        L("DirRecep", 0, 1, kText, 70, 0, false),
        L("CmnaRecep", 0, 1, kText, 20, 0, false),
        L("CiudadRecep", 0, 1, kText, 20, 0, false),
        L("DirPostal", 0, 1, kText, 70, 0, false),
        L("CmnaPostal", 0, 1, kText, 20, 0, false),
        L("CiudadPostal", 0, 1, kText, 20, 0, false)}),
      G("Transporte", 0, 1, {
        L("Patente", 0, 1, kText, 8, 0, false),
        L("RUTTrans", 0, 1, kText, 10, 0, false),
        G("Chofer", 0, 1, {
          L("RUTChofer", 1, 1, kText, 10, 0, false),
          L("NombreChofer", 1, 1, kText, 30, 0, false)}),
        L("DirDest", 0, 1, kText, 70, 0, false),
        L("CmnaDest", 0, 1, kText, 20, 0, false),
        L("CiudadDest", 0, 1, kText, 20, 0, false),
        G("Aduana", 0, 1, {
          L("CodModVenta", 0, 1, kInt, 0, 0, true),
          L("CodClauVenta", 0, 1, kInt, 0, 0, true),
          L("TotClauVenta", 0, 1, kDec, 0, 2, true),
          L("CodViaTransp", 0, 1, kInt, 0, 0, true),
          L("NombreTransp", 0, 1, kText, 40, 0, false),
          L("RUTCiaTransp", 0, 1, kText, 10, 0, false),
          L("NomCiaTransp", 0, 1, kText, 40, 0, false),
          L("IdAdicTransp", 0, 1, kText, 20, 0, false),
          L("Booking", 0, 1, kText, 20, 0, false),
          L("Operador", 0, 1, kText, 20, 0, false),
          L("CodPtoEmbarque", 0, 1, kInt, 0, 0, true),
          L("IdAdicPtoEmb", 0, 1, kText, 20, 0, false),
          L("CodPtoDesemb", 0, 1, kInt, 0, 0, true),
          L("IdAdicPtoDesemb", 0, 1, kText, 20, 0, false),
          L("Tara", 0, 1, kInt, 0, 0, true),
          L("CodUnidMedTara", 0, 1, kInt, 0, 0, true),
          L("PesoBruto", 0, 1, kDec, 0, 2, false),
          L("CodUnidPesoBruto", 0, 1, kInt, 0, 0, true),
          L("PesoNeto", 0, 1, kDec, 0, 2, false),
          L("CodUnidPesoNeto", 0, 1, kInt, 0, 0, true),
          L("TotItems", 0, 1, kInt, 0, 0, true),
          L("TotBultos", 0, 1, kInt, 0, 0, true),
          G("TipoBultos", 0, 10, {
            L("CodTpoBultos", 0, 1, kInt, 0, 0, true),
            L("CantBultos", 0, 1, kInt, 0, 0, true),
            L("Marcas", 0, 1, kText, 255, 0, false),
            L("IdContainer", 0, 1, kText, 25, 0, false),
            L("Sello", 0, 1, kText, 20, 0, false),
            L("EmisorSello", 0, 1, kText, 70, 0, false)}),
          L("MntFlete", 0, 1, kDec, 0, 4, true),
          L("MntSeguro", 0, 1, kDec, 0, 4, true),
          L("CodPaisRecep", 0, 1, kInt, 0, 0, true),
          L("CodPaisDestin", 0, 1, kInt, 0, 0, true)})}),
      G("Totales", 1, 1, {
        L("TpoMoneda", 1, 1, kText, 0, 0, false),
        L("MntExe", 1, 1, kDec, 0, 4, false),
        L("MntTotal", 1, 1, kDec, 0, 4, false)}),
      G("OtraMoneda", 0, 1, {
        L("TpoMoneda", 1, 1, kText, 0, 0, false),
        L("TpoCambio", 0, 1, kDec, 0, 4, true),
        L("MntExeOtrMnda", 0, 1, kDec, 0, 0, false),
        L("MntTotOtrMnda", 1, 1, kDec, 0, 0, false)})}),
    G("Detalle", 1, 60, {
      L("NroLinDet", 1, 1, kInt, 0, 0, true),
      G("CdgItem", 0, 5, {
        L("TpoCodigo", 1, 1, kText, 10, 0, false),
        L("VlrCodigo", 1, 1, kText, 35, 0, false)}),
      L("IndExe", 0, 1, kInt, 0, 0, true),
      L("NmbItem", 1, 1, kText, 80, 0, false),
      L("DscItem", 0, 1, kText, 1000, 0, false),
      L("QtyRef", 0, 1, kDec, 0, 6, true),
      L("UnmdRef", 0, 1, kText, 4, 0, false),
      L("PrcRef", 0, 1, kDec, 0, 6, true),
      L("QtyItem", 0, 1, kDec, 0, 6, true),
      G("Subcantidad", 0, 5, {
        L("SubQty", 1, 1, kDec, 0, 6, true),
        L("SubCod", 1, 1, kText, 35, 0, false),
        L("TipCodSubQty", 0, 1, kText, 10, 0, false)}),
      L("FchElabor", 0, 1, kDate, 0, 0, false),
      L("FchVencim", 0, 1, kDate, 0, 0, false),
      L("UnmdItem", 0, 1, kText, 4, 0, false),
      L("PrcItem", 0, 1, kDec, 0, 6, true),
      G("OtrMnda", 0, 1, {
        L("PrcOtrMon", 1, 1, kDec, 0, 4, true),
        L("Moneda", 1, 1, kText, 3, 0, false),
        L("FctConv", 0, 1, kDec, 0, 4, true),
        L("DctoOtrMnda", 0, 1, kDec, 0, 4, true),
        L("RecargoOtrMnda", 0, 1, kDec, 0, 4, true),
        L("MontoItemOtrMnda", 1, 1, kDec, 0, 4, true)}),
      L("DescuentoPct", 0, 1, kDec, 0, 2, true),
      L("DescuentoMonto", 0, 1, kInt, 0, 0, true),
      G("SubDscto", 0, 5, {
        L("TipoDscto", 1, 1, kText, 0, 0, false),
        L("ValorDscto", 1, 1, kDec, 0, 2, true)}),
      L("RecargoPct", 0, 1, kDec, 0, 2, true),
      L("RecargoMonto", 0, 1, kInt, 0, 0, true),
      G("SubRecargo", 0, 5, {
        L("TipoRecargo", 1, 1, kText, 0, 0, false),
        L("ValorRecargo", 1, 1, kDec, 0, 2, true)}),
      L("MontoItem", 1, 1, kDec, 0, 4, false)}),
    G("SubTotInfo", 0, 20, {
      L("NroSTI", 1, 1, kInt, 0, 0, true),
      L("GlosaSTI", 1, 1, kText, 40, 0, false),
      L("OrdenSTI", 0, 1, kInt, 0, 0, true),
      L("SubTotNetoSTI", 0, 1, kDec, 0, 2, true),
      L("SubTotIVASTI", 0, 1, kDec, 0, 2, true),
      L("SubTotAdicSTI", 0, 1, kDec, 0, 2, true),
      L("SubTotExeSTI", 0, 1, kDec, 0, 2, true),
      L("ValSubtotSTI", 0, 1, kDec, 0, 2, true),
      L("LineasDeta", 0, 60, kInt, 0, 0, true)}),
    G("DscRcgGlobal", 0, 20, {
      L("NroLinDR", 1, 1, kInt, 0, 0, true),
      L("TpoMov", 1, 1, kText, 0, 0, false),
      L("GlosaDR", 0, 1, kText, 45, 0, false),
      L("TpoValor", 1, 1, kText, 0, 0, false),
      L("ValorDR", 1, 1, kDec, 0, 2, true),
      L("ValorDROtrMnda", 0, 1, kDec, 0, 4, true),
      L("IndExeDR", 0, 1, kInt, 0, 0, true)}),
    G("Referencia", 0, 40, {
      L("NroLinRef", 1, 1, kInt, 0, 0, true),
      L("TpoDocRef", 1, 1, kText, 3, 0, false),
      L("IndGlobal", 0, 1, kInt, 0, 0, false),
      L("FolioRef", 1, 1, kText, 18, 0, false),
      L("RUTOtr", 0, 1, kText, 10, 0, false),
      L("IdAdicOtr", 0, 1, kText, 20, 0, false),
      L("FchRef", 1, 1, kDate, 0, 0, false),
      L("CodRef", 0, 1, kInt, 0, 0, true),
      L("RazonRef", 0, 1, kText, 90, 0, false)})});
}

Node make_boleta() {
  return
G("Documento", 1, 1, {
    G("Encabezado", 1, 1, {
      G("IdDoc", 1, 1, {
        L("TipoDTE", 1, 1, kInt, 0, 0, true),
        L("Folio", 1, 1, kInt, 0, 0, true),
        L("FchEmis", 1, 1, kDate, 0, 0, false),
        L("IndServicio", 1, 1, kInt, 0, 0, true),
        L("IndMntNeto", 0, 1, kInt, 0, 0, false),
        L("PeriodoDesde", 0, 1, kDate, 0, 0, false),
        L("PeriodoHasta", 0, 1, kDate, 0, 0, false),
        L("FchVenc", 0, 1, kDate, 0, 0, false)}),
      G("Emisor", 1, 1, {
        L("RUTEmisor", 1, 1, kText, 10, 0, false),
        L("RznSocEmisor", 0, 1, kText, 100, 0, false),
        L("GiroEmisor", 0, 1, kText, 80, 0, false),
        L("CdgSIISucur", 0, 1, kInt, 0, 0, true),
        L("DirOrigen", 0, 1, kText, 70, 0, false),
        L("CmnaOrigen", 0, 1, kText, 20, 0, false),
        L("CiudadOrigen", 0, 1, kText, 20, 0, false)}),
      G("Receptor", 1, 1, {
        L("RUTRecep", 1, 1, kText, 10, 0, false),
        L("CdgIntRecep", 0, 1, kText, 20, 0, false),
        L("RznSocRecep", 0, 1, kText, 100, 0, false),
        L("Contacto", 0, 1, kText, 80, 0, false),
        L("DirRecep", 0, 1, kText, 70, 0, false),
        L("CmnaRecep", 0, 1, kText, 20, 0, false),
        L("CiudadRecep", 0, 1, kText, 20, 0, false),
        L("DirPostal", 0, 1, kText, 70, 0, false),
        L("CmnaPostal", 0, 1, kText, 20, 0, false),
        L("CiudadPostal", 0, 1, kText, 20, 0, false)}),
      G("Totales", 1, 1, {
        L("MntNeto", 0, 1, kInt, 0, 0, false),
        L("MntExe", 0, 1, kInt, 0, 0, false),
        L("IVA", 0, 1, kInt, 0, 0, true),
        L("MntTotal", 1, 1, kInt, 0, 0, false),
        L("MontoNF", 0, 1, kInt, 0, 0, false),
        L("TotalPeriodo", 0, 1, kInt, 0, 0, false),
        L("SaldoAnterior", 0, 1, kInt, 0, 0, false),
        L("VlrPagar", 0, 1, kInt, 0, 0, false)})}),
    G("Detalle", 0, 1000, {
      L("NroLinDet", 1, 1, kInt, 0, 0, true),
      G("CdgItem", 0, 5, {
        L("TpoCodigo", 1, 1, kText, 10, 0, false),
        L("VlrCodigo", 1, 1, kText, 35, 0, false)}),
      L("IndExe", 0, 1, kInt, 0, 0, true),
      L("ItemEspectaculo", 0, 1, kInt, 0, 0, true),
      L("RUTMandante", 0, 1, kText, 10, 0, false),
      L("NmbItem", 1, 1, kText, 80, 0, false),
      G("InfoTicket", 0, 1, {
        L("FolioTicket", 1, 1, kInt, 0, 0, true),
        L("FchGenera", 1, 1, kText, 0, 0, false),
        L("NmbEvento", 1, 1, kText, 80, 0, false),
        L("TpoTicket", 1, 1, kText, 10, 0, false),
        L("CdgEvento", 1, 1, kText, 5, 0, false),
        L("FchEvento", 1, 1, kText, 0, 0, false),
        L("LugarEvento", 1, 1, kText, 80, 0, false),
        L("UbicEvento", 1, 1, kText, 20, 0, false),
        L("FilaUbicEvento", 0, 1, kText, 3, 0, false),
        L("AsntoUbicEvento", 0, 1, kText, 3, 0, false)}),
      L("DscItem", 0, 1, kText, 1000, 0, false),
      L("QtyItem", 0, 1, kDec, 0, 6, true),
      L("UnmdItem", 0, 1, kText, 4, 0, false),
      L("PrcItem", 0, 1, kDec, 0, 6, true),
      L("DescuentoPct", 0, 1, kDec, 0, 2, false),
      L("DescuentoMonto", 0, 1, kInt, 0, 0, false),
      L("RecargoPct", 0, 1, kDec, 0, 2, false),
      L("RecargoMonto", 0, 1, kInt, 0, 0, false),
      L("MontoItem", 1, 1, kInt, 0, 0, false)}),
    G("SubTotInfo", 0, 20, {
      L("NroSTI", 1, 1, kInt, 0, 0, true),
      L("GlosaSTI", 0, 1, kText, 80, 0, false),
      L("OrdenSTI", 0, 1, kInt, 0, 0, true),
      L("SubTotNetoSTI", 0, 1, kDec, 0, 2, true),
      L("SubTotIVASTI", 0, 1, kDec, 0, 2, true),
      L("SubTotAdicSTI", 0, 1, kDec, 0, 2, true),
      L("SubTotExeSTI", 0, 1, kDec, 0, 2, true),
      L("ValSubtotSTI", 0, 1, kDec, 0, 2, true),
      L("LineasDeta", 0, 1000, kInt, 0, 0, true)}),
    G("DscRcgGlobal", 0, 20, {
      L("NroLinDR", 1, 1, kInt, 0, 0, true),
      L("TpoMov", 1, 1, kText, 0, 0, false),
      L("GlosaDR", 0, 1, kText, 45, 0, false),
      L("TpoValor", 1, 1, kText, 0, 0, false),
      L("ValorDR", 1, 1, kDec, 0, 2, true),
      L("IndExeDR", 0, 1, kInt, 0, 0, true)}),
    G("Referencia", 0, 40, {
      L("NroLinRef", 1, 1, kInt, 0, 0, true),
      L("TpoDocRef", 0, 1, kText, 3, 0, false),
      L("FolioRef", 0, 1, kText, 18, 0, false),
      L("CodRef", 0, 1, kText, 18, 0, false),
      L("RazonRef", 0, 1, kText, 90, 0, false),
      L("CodVndor", 0, 1, kText, 8, 0, false),
      L("CodCaja", 0, 1, kText, 8, 0, false)})});
}

}  // namespace

const Node& schema_for(int tipo) {
  // Built once, read-only afterwards: safe to share between threads.
  static const Node documento = make_documento();
  static const Node liquidacion = make_liquidacion();
  static const Node exportaciones = make_exportaciones();
  static const Node boleta = make_boleta();
  if (tipo == 39 || tipo == 41) return boleta;
  if (tipo == 43) return liquidacion;
  if (tipo == 110 || tipo == 111 || tipo == 112) return exportaciones;
  return documento;
}

const Node* Node::find(std::string_view key) const noexcept {
  if (slots.empty()) return nullptr;
  const std::uint32_t h = name_hash(key);
  const std::size_t mask = slots.size() - 1;
  for (std::size_t s = h & mask; slots[s].second != 0; s = (s + 1) & mask) {
    const Node& c = children[slots[s].second - 1];
    if (slots[s].first == h && key == c.key()) return &c;
  }
  return nullptr;
}

}  // namespace dte::detail
