import base64

import dte_native
from dte_native import testkit
from lxml import etree

from odoo import Command, fields
from odoo.exceptions import UserError
from odoo.tests import tagged

from .test_l10n_cl_dte import ISSUER_RUT, L10nClDteCommon

NS = {'s': 'http://www.sii.cl/SiiDte'}


class EmissionTypesCommon(L10nClDteCommon):
    """CAFs for 41, 46, 52 and 110-112, a dollar rate, a foreign customer, a vendor for the 46."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        for doc_type in (41, 46, 52, 110, 111, 112):
            cls.cafs[doc_type] = cls._load_caf(
                testkit.make_caf(ISSUER_RUT, doc_type, cls.sii_private_pem, folio_from=1, folio_to=50))
        cls.usd = cls.setup_other_currency('USD', rates=[('2000-01-01', 0.001)])  # 1 USD = 1000 CLP
        cls.foreign = cls.env['res.partner'].with_context(no_vat_validation=True).create({
            'name': 'Andes Trading Corporation',
            'is_company': True,
            'country_id': cls.env.ref('base.us').id,
            'l10n_cl_sii_taxpayer_type': '4',
            'vat': '84-1234567',
            'street': '1200 Brickell Ave',
            'city': 'Miami',
        })
        cls.vendor = cls.env['res.partner'].create({
            'name': 'Juan Carlos Fuentes Rojas',
            'country_id': cls.env.ref('base.cl').id,
            'l10n_latam_identification_type_id': cls.env.ref('l10n_cl.it_RUT').id,
            'vat': '15432876-9',
            'l10n_cl_sii_taxpayer_type': '1',
            'l10n_cl_activity_description': 'Recoleccion de chatarra',
            'street': 'Pasaje Los Olmos 87',
            'city': 'San Bernardo',
        })
        cls.purchase_journal = cls.company_data['default_journal_purchase']
        cls.purchase_journal.write({'l10n_latam_use_documents': True, 'l10n_cl_dte_enabled': True})
        cls.ref_tax = cls.env['account.chart.template'].ref
        cls.fob = cls.env['account.incoterms'].search([('code', '=', 'FOB')], limit=1)

    def _doc_type(self, code):
        return self.env['l10n_latam.document.type'].search(
            [('code', '=', code), ('country_id.code', '=', 'CL')], limit=1)

    def _move(self, code, partner, lines, journal=None, move_type='out_invoice', **values):
        move = self.env['account.move'].create({
            'move_type': move_type,
            'partner_id': partner.id,
            'journal_id': (journal or self.journal).id,
            'invoice_date': fields.Date.context_today(self.env.user),
            'l10n_latam_document_type_id': self._doc_type(code).id,
            'invoice_line_ids': [Command.create(line) for line in lines],
            **values,
        })
        move.action_post()
        self.assertEqual(move.state, 'posted')
        return move


@tagged('post_install', '-at_install', 'post_install_l10n')
class TestEmissionTypes(EmissionTypesCommon):
    """The move -> dte_native gathering of guías (52), exports (110-112), facturas de compra (46),
    foreign-currency documents and additional taxes: each DTE signs, verifies and its envelope
    validates against SII's schema."""

    def _check_dte(self, move, doc_type):
        """Signed, verified, inside a schema-valid envelope; returns the parsed DTE."""
        doc = move.l10n_cl_dte_document_id
        self.assertEqual((doc.doc_type, doc.state), (doc_type, 'to_send'))
        xml = doc._signed_xml()
        self._verify(xml)
        envelope = doc._build_envelope()
        self._verify(envelope)
        if dte_native.schema_dir():
            result = dte_native.validate(envelope)
            self.assertTrue(result.valid, [str(e) for e in result.errors][:5])
        return etree.fromstring(xml)

    def test_guia_52_from_move(self):
        # Offered on a DTE sale journal even though l10n_cl files 52 under stock pickings.
        draft = self.env['account.move'].new({
            'move_type': 'out_invoice', 'journal_id': self.journal.id, 'partner_id': self.partner.id})
        self.assertIn(self._doc_type('52').id, draft.l10n_latam_available_document_type_ids._origin.ids)
        carrier = self.env['res.partner'].create({'name': 'Transportes Rapidos', 'vat': '78901234-2'})
        guia = self._move('52', self.partner, [
            {'name': 'Aceite de oliva 1 L', 'quantity': 48, 'price_unit': 6490, 'tax_ids': [Command.set(self.iva.ids)]},
        ], l10n_cl_dte_ind_traslado='5', l10n_cl_dte_tipo_despacho='2', l10n_cl_dte_vehicle_plate='KXBT42',
            l10n_cl_dte_carrier_id=carrier.id, l10n_cl_dte_driver_name='Luis Soto',
            l10n_cl_dte_driver_vat='12345678-5')
        dte = self._check_dte(guia, 52)
        self.assertEqual(dte.findtext('.//s:IdDoc/s:IndTraslado', namespaces=NS), '5')
        self.assertEqual(dte.findtext('.//s:IdDoc/s:TipoDespacho', namespaces=NS), '2')
        self.assertEqual(dte.findtext('.//s:Transporte/s:Patente', namespaces=NS), 'KXBT42')
        self.assertEqual(dte.findtext('.//s:Transporte/s:RUTTrans', namespaces=NS), '78901234-2')
        self.assertEqual(dte.findtext('.//s:Transporte/s:DirDest', namespaces=NS), 'Los Carrera 455')
        self.assertEqual(int(dte.findtext('.//s:Totales/s:MntTotal', namespaces=NS)), round(guia.amount_total))

    def test_export_110_in_usd_and_credit_note_112(self):
        invoice = self._move('110', self.foreign, [
            {'name': 'Aceite de oliva extra virgen 1 L', 'quantity': 1200, 'price_unit': 9.75, 'tax_ids': False},
            {'name': 'Mermelada de frambuesa 350 g', 'quantity': 150, 'price_unit': 5.2, 'tax_ids': False},
        ], currency_id=self.usd.id, invoice_incoterm_id=self.fob.id, l10n_cl_dte_transport_way='1',
            l10n_cl_dte_port_loading_code=906, l10n_cl_dte_port_unloading_code=345,
            l10n_cl_dte_package_type_code=73, l10n_cl_dte_package_count=20, l10n_cl_dte_package_marks='ANDES-MIA')
        dte = self._check_dte(invoice, 110)
        self.assertEqual(dte.findtext('.//s:Receptor/s:RUTRecep', namespaces=NS), '55555555-5')
        self.assertEqual(dte.findtext('.//s:Receptor/s:Extranjero/s:Nacionalidad', namespaces=NS), '225')
        self.assertEqual(dte.findtext('.//s:Totales/s:TpoMoneda', namespaces=NS), 'DOLAR USA')
        self.assertEqual(float(dte.findtext('.//s:Totales/s:MntTotal', namespaces=NS)), 12480.0)
        aduana = dte.find('.//s:Transporte/s:Aduana', namespaces=NS)
        self.assertEqual(aduana.findtext('s:CodClauVenta', namespaces=NS), '5')
        self.assertEqual(aduana.findtext('s:CodPtoEmbarque', namespaces=NS), '906')
        self.assertEqual(aduana.findtext('s:TotBultos', namespaces=NS), '20')
        self.assertEqual(aduana.findtext('s:CodPaisDestin', namespaces=NS), '225')
        self.assertEqual(dte.findtext('.//s:OtraMoneda/s:TpoMoneda', namespaces=NS), 'PESO CL')
        self.assertEqual(float(dte.findtext('.//s:OtraMoneda/s:TpoCambio', namespaces=NS)), 1000.0)
        # The export credit note references the 110.
        reversal = self.env['account.move.reversal'].with_context(
            active_model='account.move', active_ids=invoice.ids).create({
                'reason': 'Devolucion', 'journal_id': self.journal.id, 'date': invoice.invoice_date})
        refund = self.env['account.move'].browse(reversal.refund_moves()['res_id'])
        refund.l10n_latam_document_type_id = self._doc_type('112')
        refund.action_post()
        note = self._check_dte(refund, 112)
        self.assertEqual(note.findtext('.//s:Referencia/s:TpoDocRef', namespaces=NS), '110')
        self.assertEqual(note.findtext('.//s:Referencia/s:CodRef', namespaces=NS), '1')

    def test_factura_compra_46_with_vat_retention(self):
        bill = self._move('46', self.vendor, [
            {'name': 'Chatarra de cobre', 'quantity': 350, 'price_unit': 4200,
             'tax_ids': [Command.set((self.ref_tax('OTAX_19') | self.ref_tax('I_RTI')).ids)]},
        ], journal=self.purchase_journal, move_type='in_invoice')
        self.assertEqual(bill.l10n_cl_dte_document_id.folio, 1)
        dte = self._check_dte(bill, 46)
        self.assertEqual(dte.findtext('.//s:Emisor/s:RUTEmisor', namespaces=NS), ISSUER_RUT)
        self.assertEqual(dte.findtext('.//s:Receptor/s:RUTRecep', namespaces=NS), '15432876-9')
        self.assertEqual(dte.findtext('.//s:Detalle/s:CodImpAdic', namespaces=NS), '15')
        self.assertEqual(dte.findtext('.//s:ImptoReten/s:TipoImp', namespaces=NS), '15')
        self.assertEqual(dte.findtext('.//s:ImptoReten/s:MontoImp', namespaces=NS), '279300')
        # The retained VAT is paid by the buyer: the seller gets the net amount.
        self.assertEqual(int(dte.findtext('.//s:Totales/s:MntTotal', namespaces=NS)), 1470000)
        self.assertEqual(round(abs(bill.amount_total_signed)), 1470000)

    def test_invoice_33_in_foreign_currency(self):
        invoice = self._move('33', self.partner, [
            {'name': 'Consultoria', 'quantity': 3, 'price_unit': 120.5, 'tax_ids': [Command.set(self.iva.ids)]},
        ], currency_id=self.usd.id)
        dte = self._check_dte(invoice, 33)
        # Pesos in the totals, dollars in OtraMoneda.
        self.assertEqual(int(dte.findtext('.//s:Totales/s:MntNeto', namespaces=NS)), 361500)
        self.assertEqual(dte.findtext('.//s:OtraMoneda/s:TpoMoneda', namespaces=NS), 'DOLAR USA')
        self.assertEqual(float(dte.findtext('.//s:OtraMoneda/s:TpoCambio', namespaces=NS)), 1000.0)
        self.assertAlmostEqual(float(dte.findtext('.//s:OtraMoneda/s:MntTotOtrMnda', namespaces=NS)),
                               invoice.amount_total, delta=0.01)

    def test_additional_taxes_ila(self):
        ila_sugar = self.ref_tax('ila_a_180_s')  # l10n_cl code 26 at 18%: SII's 271
        ila_wine = self.ref_tax('ila_v_205_s')
        invoice = self._move('33', self.partner, [
            {'name': 'Bebida cola 3 L', 'quantity': 10, 'price_unit': 1500,
             'tax_ids': [Command.set((self.iva | ila_sugar).ids)]},
            {'name': 'Vino tinto reserva', 'quantity': 6, 'price_unit': 5000,
             'tax_ids': [Command.set((self.iva | ila_wine).ids)]},
        ])
        dte = self._check_dte(invoice, 33)
        codes = sorted(e.text for e in dte.iterfind('.//s:Detalle/s:CodImpAdic', namespaces=NS))
        self.assertEqual(codes, ['25', '271'])
        imps = {e.findtext('s:TipoImp', namespaces=NS): int(e.findtext('s:MontoImp', namespaces=NS))
                for e in dte.iterfind('.//s:Totales/s:ImptoReten', namespaces=NS)}
        self.assertEqual(imps, {'271': 2700, '25': 6150})
        self.assertEqual(int(dte.findtext('.//s:Totales/s:MntTotal', namespaces=NS)), round(invoice.amount_total))

    def test_boleta_exenta_41(self):
        boleta = self._move('41', self.consumer, [
            {'name': 'Entrada museo', 'quantity': 2, 'price_unit': 3000, 'tax_ids': False}])
        dte = self._check_dte(boleta, 41)
        self.assertEqual(int(dte.findtext('.//s:Totales/s:MntExe', namespaces=NS)), 6000)

    def test_unknown_tax_code_is_a_clear_error(self):
        odd = self.env['account.tax'].create({
            'name': 'Impuesto raro', 'amount': 3, 'type_tax_use': 'sale', 'l10n_cl_sii_code': 99,
            'company_id': self.company.id})
        move = self.env['account.move'].create({
            'move_type': 'out_invoice', 'partner_id': self.partner.id, 'journal_id': self.journal.id,
            'invoice_date': fields.Date.context_today(self.env.user),
            'l10n_latam_document_type_id': self._doc_type('33').id,
            'invoice_line_ids': [Command.create({'name': 'x', 'quantity': 1, 'price_unit': 1000,
                                                 'tax_ids': [Command.set((self.iva | odd).ids)]})],
        })
        with self.assertRaisesRegex(UserError, 'SII code 99'):
            move.action_post()
        self.assertEqual(move.state, 'draft')
        self.assertEqual(self.cafs[33].next_folio, 1)

    def test_stamp_of_export(self):
        invoice = self._move('110', self.foreign, [
            {'name': 'Uva de mesa', 'quantity': 10, 'price_unit': 20.0, 'tax_ids': False}],
            currency_id=self.usd.id, invoice_incoterm_id=self.fob.id)
        self.assertTrue(base64.b64decode(invoice._l10n_cl_dte_barcode_png_b64()).startswith(b'\x89PNG'))
        # l10n_cl's invoice report takes the export path (_l10n_cl_get_amounts, currency names).
        html = self.env['ir.actions.report']._render_qweb_html('account.report_invoice', invoice.ids)[0]
        self.assertIn(b'Timbre Electr', html)
        self.assertEqual(invoice._l10n_cl_normalize_currency_name('USD'), 'DOLAR USA')
