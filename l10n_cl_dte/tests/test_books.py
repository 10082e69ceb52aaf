import base64
import datetime

import dte_native
from dte_native import books as dte_books, testkit

from odoo import fields
from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.tests import tagged
from odoo.tools import mute_logger

from .test_l10n_cl_dte import ISSUER_RUT, L10nClDteCommon

SUPPLIER_RUT = '76086428-5'
NEW_SUPPLIER_RUT = '12345678-5'
COMPRAS_HEADER = ('Nro;Tipo Doc;Tipo Compra;RUT Proveedor;Razon Social;Folio;Fecha Docto;Fecha Recepcion;'
                  'Fecha Acuse;Monto Exento;Monto Neto;Monto IVA Recuperable;Monto Iva No Recuperable;'
                  'Codigo IVA No Rec.;Monto Total\n')
VENTAS_HEADER = ('Nro;Tipo Doc;Tipo Venta;Rut cliente;Razon Social;Folio;Fecha Docto;Fecha Recepcion;'
                 'Fecha Acuse Recibo;Fecha Reclamo;Monto Exento;Monto Neto;Monto IVA;Monto total\n')


@tagged('post_install', '-at_install', 'post_install_l10n')
class TestL10nClDteBooks(L10nClDteCommon):
    """SII books generated from posted documents (totals computed by hand), signed, validated,
    sent to the simulator; RCV reconciliation; the monthly cron; access rights."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.cafs[34] = cls._load_caf(cls.kit.caf_paths[34].read_bytes())
        cls.cafs[52] = cls._load_caf(
            testkit.make_caf(ISSUER_RUT, 52, cls.sii_private_pem, folio_from=1, folio_to=20))
        cls.purchase_journal = cls.company_data['default_journal_purchase']
        cls.purchase_journal.l10n_latam_use_documents = True
        cls.purchase_iva = cls.env['account.chart.template'].ref('OTAX_19')
        cls.supplier = cls.env['res.partner'].create({
            'name': 'Proveedora Andina SpA', 'is_company': True, 'country_id': cls.env.ref('base.cl').id,
            'l10n_latam_identification_type_id': cls.env.ref('l10n_cl.it_RUT').id,
            'vat': SUPPLIER_RUT, 'l10n_cl_sii_taxpayer_type': '1',
        })
        cls.today = fields.Date.context_today(cls.env.user)
        cls.period = cls.today.strftime('%Y-%m')

    # --- helpers ---------------------------------------------------------------------------

    def _bill(self, folio, lines, code='33', move_type='in_invoice', partner=None, **extra):
        bill = self.env['account.move'].create({
            **extra,
            'move_type': move_type,
            'partner_id': (partner or self.supplier).id,
            'journal_id': self.purchase_journal.id,
            'invoice_date': self.today,
            'date': self.today,
            'l10n_latam_document_type_id': self.env['l10n_latam.document.type'].search(
                [('code', '=', code), ('country_id.code', '=', 'CL')], limit=1).id,
            'l10n_latam_document_number': str(folio),
            'invoice_line_ids': [(0, 0, line) for line in lines],
        })
        bill.action_post()
        return bill

    def _taxed(self, amount, tax=None):
        return {'name': 'Item', 'quantity': 1, 'price_unit': amount, 'tax_ids': [(6, 0, (tax or self.iva).ids)]}

    @staticmethod
    def _exempt(amount):
        return {'name': 'Exento', 'quantity': 1, 'price_unit': amount, 'tax_ids': [(5, 0, 0)]}

    def _book(self, kind, **values):
        return self.env['l10n_cl_dte.book'].create({'kind': kind, 'period': self.period,
                                                    'company_id': self.company.id, **values})

    @staticmethod
    def _summary(book):
        return {s.doc_type: (s.doc_count, s.amount_exempt, s.amount_net, s.amount_vat, s.amount_total)
                for s in book.summary_ids}

    def _check_signed(self, book):
        xml = book._signed_xml()
        self.assertTrue(xml.startswith(b'<?xml version="1.0" encoding="ISO-8859-1"?>'))
        result = dte_native.validate(xml)
        self.assertTrue(result.valid, result.errors)
        report = dte_native.verify(xml)
        self.assertTrue(report.ok, [(c.name, c.reason) for c in report.failures])
        return xml

    def _refund(self, invoice):
        reversal = self.env['account.move.reversal'].with_context(
            active_model='account.move', active_ids=invoice.ids).create({
                'reason': 'Devolucion', 'journal_id': self.journal.id, 'date': invoice.invoice_date})
        refund = self.env['account.move'].browse(reversal.refund_moves()['res_id'])
        refund.l10n_latam_document_type_id = self.env.ref('l10n_cl.dc_nc_f_dte')
        refund.action_post()
        return refund

    # --- books -----------------------------------------------------------------------------

    def test_sales_book_totals(self):
        first = self._invoice('33', lines=[{'name': 'A', 'quantity': 10, 'price_unit': 1000}])   # 10000 + 1900
        self._invoice('33', lines=[{'name': 'B', 'quantity': 2, 'price_unit': 25000}])           # 50000 + 9500
        self._invoice('34', lines=[self._exempt(30000)])                                         # 30000 exempt
        self._refund(first)                                                                      # 61: 10000 + 1900
        self._invoice('39', partner=self.consumer, lines=[{'name': 'Pan', 'quantity': 1, 'price_unit': 1000}])
        self._invoice('52', lines=[{'name': 'Despacho', 'quantity': 1, 'price_unit': 7000}])

        book = self._book('sale')
        book.action_generate()
        self.assertEqual(book.state, 'generated')
        self.assertEqual(self._summary(book), {
            33: (2, 0, 60000, 11400, 71400),
            34: (1, 30000, 0, 0, 30000),
            61: (1, 0, 10000, 1900, 11900),
        })  # the boleta goes in the RVD and the guía in the Libro de Guías, not in the sales book
        self.assertEqual((book.document_count, book.amount_total), (4, 113300))
        self.assertEqual(book.line_ids.filtered(lambda l: l.doc_type == 33).mapped('folio'), ['1', '2'])
        self.assertTrue(all(book.line_ids.mapped('move_id')))
        xml = self._check_signed(book)
        self.assertIn(b'<TipoOperacion>VENTA</TipoOperacion>', xml)
        self.assertIn(('<RutEmisorLibro>%s</RutEmisorLibro>' % ISSUER_RUT).encode(), xml)
        self.assertNotIn(b'PRIVATE KEY', xml)

        # One monthly book per kind and period; a rectifying one needs SII's code.
        with mute_logger('odoo.sql_db'), self.assertRaises(Exception), self.env.cr.savepoint():
            self._book('sale')
        with self.assertRaisesRegex(ValidationError, 'authorization code'):
            self._book('sale', book_type='RECTIFICA')
        rectifying = self._book('sale', book_type='RECTIFICA', rectification_code='AB12')
        rectifying.action_generate()
        self.assertIn(b'<CodAutRec>AB12</CodAutRec>', self._check_signed(rectifying))

        # A sent book cannot be generated again.
        book._set_state('sent')
        with self.assertRaisesRegex(UserError, 'rectifying'):
            book.action_generate()

    def test_purchase_book_totals(self):
        self._bill(777, [self._taxed(100000, self.purchase_iva), self._exempt(5000)])   # 5000 + 100000 + 19000
        self._bill(778, [self._taxed(20000, self.purchase_iva)], code='61', move_type='in_refund')  # 20000 + 3800
        book = self._book('purchase')
        book.action_generate()
        self.assertEqual(self._summary(book), {33: (1, 5000, 100000, 19000, 124000),
                                               61: (1, 0, 20000, 3800, 23800)})
        line = book.line_ids.filtered(lambda l: l.doc_type == 33)
        self.assertEqual((line.folio, line.partner_rut), ('777', SUPPLIER_RUT))
        xml = self._check_signed(book)
        self.assertIn(b'<TipoOperacion>COMPRA</TipoOperacion>', xml)
        self.assertIn(b'<TotOpIVARec>1</TotOpIVARec>', xml)

        # Exports: the CSV reads back with the core's reader, the XLSX is a workbook.
        csv_bytes = book._export_csv_bytes()
        entries = dte_books.entries_from_csv(csv_bytes, 'cv')
        self.assertEqual(entries.issues, [])
        self.assertEqual(sorted((e['TpoDoc'], e['NroDoc'], e['MntTotal']) for e in entries.detalle),
                         [(33, 777, 124000), (61, 778, 23800)])
        self.assertTrue(book._export_xlsx_bytes().startswith(b'PK'))
        action = book.action_export_xlsx()
        self.assertIn('/web/content/', action['url'])
        # The QWeb summary renders the totals.
        html = self.env['ir.actions.report']._render_qweb_html('l10n_cl_dte.report_book', book.ids)[0]
        self.assertIn(b'147.800', html)
        self.assertIn(b'Libro de Compras', html)

    def test_purchase_book_vat_kinds(self):
        """l10n_cl's purchase taxes and fiscal positions go to their book columns; by hand, IVA 19 %."""
        ref = self.env['account.chart.template'].ref
        vat, no_rec, common, asset = ref('OTAX_19'), ref('iva_compra_no_recup'), ref('iva_compra_uso_comun'), \
            ref('iva_activo_fijo')
        ila, retention = ref('ila_a_100_p'), ref('I_RTI')
        # Non-recoverable through the fiscal position "invoices registered out of term" (code 2).
        self._bill(801, [self._taxed(100000, no_rec)], fiscal_position_id=ref('afpt_non_recoverable_vat_2').id)
        self._bill(802, [self._taxed(50000, common)])                                   # uso común 9500
        self._bill(803, [self._taxed(200000, asset), self._taxed(10000, vat)])           # fixed asset 200000
        self._bill(804, [self._taxed(30000, vat | ila), self._exempt(5000)])           # ILA 10 %: 3000
        self._bill(805, [self._taxed(10000, vat | retention)], code='46')                # IVA retenido 1900
        self._bill(806, [self._taxed(10000, no_rec)])                                   # no position: book's code
        book = self._book('purchase', proportionality_factor=60, no_rec_default_code='1')
        book.action_generate()
        self.assertEqual(self._summary(book), {
            33: (5, 5000, 400000, 39900 + 5700, 119000 + 59500 + 249900 + 43700 + 11900),
            46: (1, 0, 10000, 1900, 11900),  # the retention is shown (code 15) and withheld
        })
        s33 = book.summary_ids.filtered(lambda s: s.doc_type == 33)
        self.assertEqual((s33.amount_vat_no_rec, s33.amount_vat_common, s33.amount_vat_common_credit,
                          s33.amount_fixed_asset, s33.amount_fixed_asset_vat, s33.amount_other),
                         (19000 + 1900, 9500, 5700, 200000, 38000, 3000))
        lines = {line.folio: line for line in book.line_ids}
        self.assertEqual((lines['801'].amount_vat, lines['801'].amount_vat_no_rec, lines['801'].vat_no_rec_code),
                         (0, 19000, 2))
        self.assertEqual((lines['806'].amount_vat_no_rec, lines['806'].vat_no_rec_code), (1900, 1))
        self.assertEqual((lines['802'].amount_vat, lines['802'].amount_vat_common), (0, 9500))
        self.assertEqual((lines['805'].other_tax_code, lines['805'].amount_other), (15, 1900))
        xml = self._check_signed(book)
        for fragment in (b'<FctProp>60.000</FctProp>', b'<TotCredIVAUsoComun>5700</TotCredIVAUsoComun>',
                         b'<CodIVANoRec>2</CodIVANoRec>', b'<MntActivoFijo>200000</MntActivoFijo>',
                         b'<TotMntIVAActivoFijo>38000</TotMntIVAActivoFijo>', b'<CodImp>27</CodImp>'):
            self.assertIn(fragment, xml)
        self.assertEqual(book.segment_ids, self.env['l10n_cl_dte.book.segment'])
        # The CSV export reads back with the same columns and totals.
        entries = dte_books.entries_from_csv(book._export_csv_bytes(), 'cv')
        self.assertEqual(entries.issues, [])
        again = dte_books.normalize_libro_cv({'Caratula': {'RutEmisorLibro': ISSUER_RUT, 'PeriodoTributario': self.period,
                                                           'FchResol': '2014-08-22', 'NroResol': 80,
                                                           'TipoOperacion': 'COMPRA'},
                                              'FctProp': 60, 'Detalle': entries.detalle})
        self.assertEqual(again['ResumenPeriodo'], dte_books.normalize_libro_cv(book._book_input()[0])['ResumenPeriodo'])

    def test_segmented_book_sent_to_simulator(self):
        simulator = self._start_simulator()
        for folio in (901, 902, 903, 904, 905):
            self._bill(folio, [self._taxed(1000 * (folio - 900), self.purchase_iva)])
        book = self._book('purchase', segment_size=2)
        book.action_generate()
        self.assertFalse(book.signed_xml_file)
        segments = book.segment_ids.sorted('number')
        self.assertEqual(segments.mapped('number'), [1, 2, 3])
        self.assertEqual(segments.mapped('final'), [False, False, True])
        # Whole period: 15000 net, 2850 IVA (190 + 380 + 570 + 760 + 950).
        self.assertEqual(self._summary(book), {33: (5, 0, 15000, 2850, 17850)})
        for segment in segments:
            xml = segment._signed_xml()
            self.assertTrue(dte_native.validate(xml).valid)
            self.assertTrue(dte_native.verify(xml).ok)
            self.assertIn(b'<TipoEnvio>%s</TipoEnvio>' % (b'FINAL' if segment.final else b'PARCIAL'), xml)
            self.assertEqual(b'<ResumenPeriodo>' in xml, segment.final)
        self.assertIn(b'<TotMntTotal>17850</TotMntTotal>', segments[-1]._signed_xml())

        # SII unavailable for every attempt of the first upload: nothing is lost, the book stays
        # generated with the reason, and sending again sends every segment.
        simulator.configure(faults=[{'service': 'upload', 'kind': 'http_error', 'status': 503, 'count': 4}])
        with mute_logger('odoo.addons.l10n_cl_dte.models.l10n_cl_dte_book'):
            book.action_send_to_sii()
        self.assertEqual(book.state, 'generated')
        self.assertEqual(set(segments.mapped('state')), {'generated'})
        self.assertTrue(segments[0].sii_message)
        simulator.configure(faults=[])
        book.action_send_to_sii()
        self.assertEqual(book.state, 'sent', book.sii_message)
        self.assertEqual(set(segments.mapped('state')), {'sent'})
        track_ids = segments.mapped('track_id')
        self.assertEqual(len(set(track_ids)), 3)
        roots = {e['trackid']: e['root'] for e in simulator.state()['envelopes']}
        self.assertEqual({roots[t] for t in track_ids}, {'LibroCompraVenta'})
        book.action_check_status()
        self.assertEqual(set(segments.mapped('state')), {'accepted'})
        self.assertEqual(book.state, 'accepted', book.sii_message)

        # Back to one piece: regenerating a draft with a big segment size drops the segments.
        small = self._book('purchase', book_type='RECTIFICA', rectification_code='R9', segment_size=0)
        small.action_generate()
        self.assertFalse(small.segment_ids)
        self.assertTrue(small.signed_xml_file)

    def test_rvd_and_guide_book(self):
        boleta = self._invoice('39', partner=self.consumer, lines=[{'name': 'Pan', 'quantity': 1, 'price_unit': 10000}])
        rvd = self._book('rvd', day=self.today)
        rvd.action_generate()
        self.assertEqual(self._summary(rvd), {39: (1, 0, 10000, 1900, 11900)})
        self.assertEqual(rvd.line_ids.move_id, boleta)
        self.assertIn(b'<ConsumoFolios', self._check_signed(rvd))

        # Guías: the posted 52s (a sale and an internal transfer) plus a CSV of guías issued
        # elsewhere; a bad CSV row is reported, the rest kept.
        sale_guia = self._invoice('52', lines=[{'name': 'Despacho', 'quantity': 1, 'price_unit': 10000}])
        transfer = self._invoice('52', lines=[{'name': 'Traslado', 'quantity': 1, 'price_unit': 2000}], post=False)
        transfer.l10n_cl_dte_ind_traslado = '5'
        transfer.action_post()
        csv_data = ('Folio;TpoOper;FchDoc;RUTDoc;MntNeto\n'
                    '901;1;%(d)s;12345678-5;1000\n902;5;%(d)s;12345678-6;500\n' % {'d': self.today.isoformat()})
        with self.assertRaisesRegex(ValidationError, 'special book'):
            self._book('guide', book_type='MENSUAL')
        guide = self._book('guide', book_type='ESPECIAL', notification_folio=7,
                           detail_csv_file=base64.b64encode(csv_data.encode()))
        guide.action_generate()
        # Sales: 11900 + 1190 (CSV); transfer: 2380 (type 5).
        self.assertEqual(self._summary(guide), {52: (3, 0, 0, 0, 11900 + 1190 + 2380)})
        self.assertEqual(guide.line_ids.move_id, sale_guia | transfer)
        self.assertIn('line 3', guide.issues)
        xml = self._check_signed(guide)
        self.assertIn(b'<TotGuiaVenta>2</TotGuiaVenta>', xml)
        self.assertIn(b'<TpoTraslado>5</TpoTraslado>', xml)

    # --- SII -------------------------------------------------------------------------------

    def test_send_book_to_simulator(self):
        simulator = self._start_simulator()

        self._invoice('33', lines=[{'name': 'A', 'quantity': 1, 'price_unit': 1000}])
        book = self._book('sale')
        with self.assertRaisesRegex(UserError, 'Generate'):
            book.action_send_to_sii()
        book.action_generate()
        book.action_send_to_sii()
        self.assertEqual(book.state, 'sent', book.sii_message)
        self.assertTrue(book.track_id)
        envelope = next(e for e in simulator.state()['envelopes'] if e['trackid'] == book.track_id)
        self.assertEqual(envelope['root'], 'LibroCompraVenta')
        self.assertEqual(envelope['state'], 'EPR')  # schema and envelope signature checked by the simulator

        # A book's EPR carries no per-type counts: read as a book's answer, it is final.
        book.action_check_status()
        self.assertEqual(book.state, 'accepted', book.sii_message)
        self.assertIn('EPR', book.sii_message)
        with self.assertRaisesRegex(UserError, 'cannot go from'):
            book.action_mark_rejected()

        # A boleta summary of a day without boletas (EPR too).
        rvd = self._book('rvd', day=self.today)
        rvd.action_generate()
        self.assertEqual(self._summary(rvd), {39: (0, 0, 0, 0, 0)})
        rvd.action_send_to_sii()
        rvd.action_check_status()
        self.assertEqual(rvd.state, 'accepted', rvd.sii_message)

        # SII's LOK ("libro cuadrado") for a rectifying book.
        simulator.configure(book_final_state='LOK')
        rectifying = self._book('sale', book_type='RECTIFICA', rectification_code='R1')
        rectifying.action_generate()
        rectifying.action_send_to_sii()
        rectifying.action_check_status()
        self.assertEqual(rectifying.state, 'accepted', rectifying.sii_message)
        self.assertIn('LOK', rectifying.sii_message)

        # SII refuses the upload (company not authorized): the book says why, back to draft.
        simulator.configure(authorized={'11111111-1': ['11111111-1']})
        purchases = self._book('purchase')
        purchases.action_generate()
        purchases.action_send_to_sii()
        self.assertEqual(purchases.state, 'rejected')
        self.assertIn('authorized', purchases.sii_message)
        purchases.action_reset_to_draft()
        self.assertEqual(purchases.state, 'draft')

    # --- RCV -------------------------------------------------------------------------------

    def _rcv(self, kind, text, register='REGISTRO'):
        rcv = self.env['l10n_cl_dte.rcv'].create({
            'kind': kind, 'register': register, 'period': self.period, 'company_id': self.company.id,
            'csv_file': base64.b64encode(text.encode('utf-8')), 'csv_filename': 'rcv.csv'})
        rcv.action_reconcile()
        return rcv

    def test_rcv_compras_reconciliation(self):
        ours = self._bill(777, [self._taxed(100000, self.purchase_iva)])    # 119000
        only_ours = self._bill(999, [self._taxed(1000, self.purchase_iva)])
        d = self.today.strftime('%d/%m/%Y')
        text = COMPRAS_HEADER + (
            f'1;33;Del Giro;{SUPPLIER_RUT};Proveedora Andina SpA;777;{d};{d} 10:00:00;;0;110000;20900;;;130900\n'
            f'2;33;Del Giro;{NEW_SUPPLIER_RUT};  Nuevo Proveedor Ltda ;888;{d};{d} 11:00:00;;1000;50000;9500;;;60500\n'
            f'3;33;Del Giro;1-2;Malo;889;{d};{d} 11:00:00;;0;100;19;;;119\n')
        rcv = self._rcv('compra', text)
        self.assertEqual((rcv.row_count, rcv.error_count), (2, 1))
        self.assertIn('line 4', rcv.parse_errors)
        kinds = sorted((f.kind, f.folio) for f in rcv.line_ids)
        self.assertEqual(kinds, [('amount_mismatch', '777'), ('amount_mismatch', '777'), ('missing_in_rcv', '999'),
                                 ('missing_locally', '888'), ('tax_mismatch', '777')])
        mismatch = rcv.line_ids.filtered(lambda f: f.kind == 'amount_mismatch' and f.field_name == 'MntTotal')
        self.assertEqual((mismatch.ours, mismatch.sii), ('119000', '130900'))
        self.assertEqual(mismatch.move_id, ours)
        self.assertEqual(mismatch.action_open_document()['res_id'], ours.id)
        self.assertEqual(rcv.line_ids.filtered(lambda f: f.kind == 'missing_in_rcv').move_id, only_ours)

        # The bill SII has and Odoo lacks: a draft with the supplier found (here created) by RUT.
        missing = rcv.line_ids.filtered(lambda f: f.kind == 'missing_locally')
        action = missing.action_create_bill()
        bill = self.env['account.move'].browse(action['res_id'])
        self.assertEqual((bill.state, bill.move_type, int(bill.l10n_latam_document_number)), ('draft', 'in_invoice', 888))
        self.assertEqual(bill.l10n_latam_document_type_id.code, '33')
        self.assertEqual(bill.partner_id.name, 'Nuevo Proveedor Ltda')
        self.assertEqual(dte_native.rut_normalize(bill.partner_id.vat), NEW_SUPPLIER_RUT)
        self.assertEqual((bill.amount_untaxed, bill.amount_tax, bill.amount_total), (51000, 9500, 60500))
        self.assertEqual(missing.move_id, bill)
        # Twice gives the same bill; a supplier Odoo knows is reused.
        self.assertEqual(missing.action_create_bill()['res_id'], bill.id)
        self.assertEqual(self.env['res.partner'].search_count([('vat', '=', NEW_SUPPLIER_RUT)]), 1)
        with self.assertRaisesRegex(UserError, 'Only purchases'):
            mismatch.action_create_bill()

        # Against the claimed register only the documents SII lists there are compared.
        claimed = self._rcv('compra', COMPRAS_HEADER.replace('Fecha Acuse;', 'Fecha Reclamo;') + (
            f'1;33;Del Giro;{SUPPLIER_RUT};Proveedora Andina SpA;777;{d};{d} 10:00:00;{d} 12:00:00;0;100000;19000;;;119000\n'),
            register='RECLAMADO')
        self.assertEqual([(f.kind, f.folio, f.ours, f.sii) for f in claimed.line_ids],
                         [('state_mismatch', '777', 'REGISTRO', 'RECLAMADO')])

    def test_rcv_ventas_reconciliation(self):
        invoice = self._invoice('33', lines=[{'name': 'A', 'quantity': 1, 'price_unit': 10000}])
        folio = invoice.l10n_latam_document_number
        d = self.today.strftime('%d/%m/%Y')
        text = VENTAS_HEADER + (
            f'1;33;Del Giro;77123456-9;Distribuidora Sur Limitada;{folio};{d};{d} 10:00:00;;;0;10000;1900;11900\n'
            f'2;33;Del Giro;77123456-9;Distribuidora Sur Limitada;50;{d};{d} 10:00:00;;;0;1000;190;1190\n')
        rcv = self._rcv('venta', text)
        self.assertEqual([(f.kind, f.folio, f.issuer_rut) for f in rcv.line_ids], [('missing_locally', '50', ISSUER_RUT)])
        with self.assertRaisesRegex(UserError, 'Only purchases'):
            rcv.line_ids.action_create_bill()
        # A compras file given as ventas is refused.
        with self.assertRaisesRegex(UserError, 'compra register'):
            self._rcv('venta', COMPRAS_HEADER + f'1;33;Del Giro;{SUPPLIER_RUT};X;1;{d};{d} 10:00:00;;0;100;19;;;119\n')

    def test_rcv_download_from_simulator(self):
        self._start_simulator()
        accepted = self._invoice('33', lines=[{'name': 'A', 'quantity': 1, 'price_unit': 10000}])
        doc = accepted.l10n_cl_dte_document_id
        Document = self.env['l10n_cl_dte.document']
        doc.action_send_to_sii()
        Document._cron_send()
        doc.next_poll = False
        Document._cron_poll_status()
        self.assertEqual(doc.state, 'accepted', doc.exchange_ids.mapped('summary'))
        not_sent = self._invoice('33', lines=[{'name': 'B', 'quantity': 1, 'price_unit': 5000}])

        rcv = self.env['l10n_cl_dte.rcv'].create({'kind': 'venta', 'period': accepted.invoice_date.strftime('%Y-%m'),
                                                  'company_id': self.company.id})
        rcv.action_download_and_reconcile()
        self.assertEqual((rcv.source, rcv.row_count, rcv.error_count), ('sii', 1, 0))
        self.assertTrue(base64.b64decode(rcv.csv_file).startswith(b'Nro;Tipo Doc;Tipo Venta;'))
        # SII's register has the accepted invoice with our amounts; the unsent one is ours only.
        self.assertEqual([(f.kind, f.move_id) for f in rcv.line_ids], [('missing_in_rcv', not_sent)])
        # The purchases register: nothing was addressed to this company.
        compras = self.env['l10n_cl_dte.rcv'].create({'kind': 'compra', 'register': 'PENDIENTE',
                                                      'period': rcv.period, 'company_id': self.company.id})
        compras.action_download_and_reconcile()
        self.assertEqual((compras.row_count, len(compras.line_ids)), (0, 0))
        # Transport trouble is a clear error.
        self.company.l10n_cl_dte_simulator_url = 'http://127.0.0.1:9'
        with self.assertRaisesRegex(UserError, 'could not be downloaded'):
            rcv.action_download_and_reconcile()

    # --- cron and security -----------------------------------------------------------------

    def test_cron_prepares_previous_month(self):
        Book = self.env['l10n_cl_dte.book'].sudo()  # the cron runs as the superuser, over every company
        created = Book._cron_prepare_previous_month(today=datetime.date(2031, 3, 15))
        mine = created.filtered(lambda b: b.company_id == self.company)
        self.assertEqual(sorted(mine.mapped('kind')), ['purchase', 'sale'])
        self.assertEqual(set(mine.mapped('period')), {'2031-02'})
        self.assertEqual(set(mine.mapped('state')), {'draft'})
        self.assertFalse(Book._cron_prepare_previous_month(today=datetime.date(2031, 3, 20)))
        january = Book._cron_prepare_previous_month(today=datetime.date(2031, 1, 1))
        self.assertEqual(set(january.mapped('period')), {'2030-12'})
        self.assertTrue(self.env.ref('l10n_cl_dte.ir_cron_l10n_cl_dte_book_prepare').active)

    def test_access_rights(self):
        self._invoice('33', lines=[{'name': 'A', 'quantity': 1, 'price_unit': 1000}])
        book = self._book('sale')
        book.action_generate()
        accountant = self.env['res.users'].create({
            'name': 'Contador', 'login': 'dte_books_accountant',
            'group_ids': [(6, 0, [self.env.ref('account.group_account_readonly').id,
                                  self.env.ref('base.group_user').id])],
            'company_id': self.company.id, 'company_ids': [(6, 0, self.company.ids)],
        })
        as_accountant = book.with_user(accountant)
        xml = base64.b64decode(as_accountant.with_context(bin_size=False).signed_xml_file)
        self.assertIn(b'<LibroCompraVenta', xml)
        self.assertNotIn(b'PRIVATE', xml)
        self.assertEqual(as_accountant.summary_ids.amount_total, 1190)
        with mute_logger('odoo.models'), self.assertRaises(AccessError):
            as_accountant.write({'period': '2020-01'})
        with mute_logger('odoo.models'), self.assertRaises(AccessError):
            as_accountant.action_generate()
        with mute_logger('odoo.models'), self.assertRaises(AccessError):
            self.certificate.with_user(accountant).read(['signer_rut'])
        # Another company's user sees none of it.
        other = self.env['res.company'].create({'name': 'Otra', 'country_id': self.env.ref('base.cl').id})
        outsider = accountant.copy({'login': 'dte_books_outsider', 'company_id': other.id,
                                    'company_ids': [(6, 0, other.ids)]})
        self.assertFalse(self.env['l10n_cl_dte.book'].with_user(outsider).search([]))
