from prometheus_client.parser import text_string_to_metric_families

from odoo.tests import HttpCase, tagged

from .test_l10n_cl_dte import L10nClDteCommon

TOKEN = 'test-metrics-token-0123456789'


@tagged('post_install', '-at_install', 'post_install_l10n')
class TestL10nClDteMetrics(L10nClDteCommon, HttpCase):
    """/l10n_cl_dte/metrics over real HTTP: bearer token (401/403) and the content read from the
    database (documents by state and type, folios left per CAF, days left on certificates)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env['ir.config_parameter'].sudo().set_param('l10n_cl_dte.metrics_token', TOKEN)

    def _get(self, token=None, scheme='Bearer'):
        headers = {'Authorization': '%s %s' % (scheme, token)} if token is not None else {}
        return self.url_open('/l10n_cl_dte/metrics', headers=headers)

    def _samples(self, text):
        return [s for f in text_string_to_metric_families(text) for s in f.samples]

    def _value(self, samples, name, **labels):
        found = [s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
        return found[0] if found else None

    def test_token_required(self):
        response = self._get()
        self.assertEqual(response.status_code, 401)
        self.assertTrue(response.headers['WWW-Authenticate'].startswith('Bearer'))
        self.assertEqual(self._get(TOKEN, scheme='Basic').status_code, 401)
        self.assertEqual(self._get('wrong-token').status_code, 403)
        self.env['ir.config_parameter'].sudo().set_param('l10n_cl_dte.metrics_token', '')
        self.assertEqual(self._get(TOKEN).status_code, 403)  # not configured: nobody gets in

    def test_metrics_content(self):
        first = self._invoice('33')
        self._invoice('33')
        first.l10n_cl_dte_document_id.action_send_to_sii()
        response = self._get(TOKEN)
        self.assertEqual(response.status_code, 200)
        self.assertTrue(response.headers['Content-Type'].startswith('text/plain; version=0.0.4'))
        samples = self._samples(response.text)
        counts = {
            (doc_type, state): count for doc_type, state, count in self.env['l10n_cl_dte.document']._read_group(
                [], ['doc_type', 'state'], ['__count'])}
        self.assertGreaterEqual(counts[(33, 'to_send')], 2)
        for (doc_type, state), count in counts.items():
            self.assertEqual(self._value(samples, 'dte_documents', doc_type=str(doc_type), state=state), count)
        caf = self.cafs[33]
        self.assertEqual(
            self._value(samples, 'dte_caf_folios_left', doc_type='33',
                        caf='33:%s-%s' % (caf.folio_from, caf.folio_to)), caf.folios_left)
        days = self._value(samples, 'dte_certificate_days_left', signer_rut=self.certificate.signer_rut)
        self.assertIsNotNone(days)
        self.assertGreater(days, 30)
        batch = first.l10n_cl_dte_document_id.batch_id
        self.assertEqual(self._value(samples, 'dte_batch_documents', batch=batch.name, state='to_send'), 1)
        self.assertEqual(self._value(samples, 'dte_metrics_source_up', source='scrape'), 1)
        # Nothing secret is exported.
        self.assertNotIn(TOKEN, response.text)
        self.assertNotIn('RSASK', response.text)
