import base64
import hashlib

from odoo import fields
from odoo.tests import tagged

from .test_l10n_cl_dte import L10nClDteCommon


@tagged('post_install', '-at_install', 'post_install_l10n')
class TestCrashSafety(L10nClDteCommon):
    """An upload interrupted between sending the envelope and committing SII's answer (a kill -9:
    scripts/crash-loop does it for real). The next attempt must ask SII before sending again and
    then re-send the same bytes only, so SII never processes the document twice."""

    def setUp(self):
        super().setUp()
        self.simulator = self._start_simulator()
        self.Document = self.env['l10n_cl_dte.document']

    def _interrupted(self, reached_sii):
        """A queued DTE whose upload was cut off: the envelope and the marker are saved (as the
        first attempt commits them before the HTTP call); with ``reached_sii`` SII got it."""
        doc = self._invoice('33').l10n_cl_dte_document_id
        doc.action_send_to_sii()
        envelope = doc._build_envelope()
        if reached_sii:
            doc._sii_client().upload(envelope, '76543210-3', filename='%s.xml' % doc.name)
        doc.write({'upload_envelope_file': base64.b64encode(envelope), 'upload_started': fields.Datetime.now()})
        return doc

    def _receptions(self, doc):
        state = self.simulator.state()
        received = sum(1 for env in state['envelopes'] for d in env['docs'] if d['folio'] == doc.folio)
        refused = sum(1 for e in state['events'] if e['type'] == 'upload_duplicate')
        return received, refused

    def test_fresh_upload_leaves_no_marker(self):
        doc = self._invoice('33').l10n_cl_dte_document_id
        doc.action_send_to_sii()
        self.Document._cron_send()
        self.assertEqual(doc.state, 'sent')
        self.assertFalse(doc.upload_started)
        self.assertFalse(doc.upload_envelope_file)
        self.assertEqual(self._receptions(doc), (1, 0))

    def test_interrupted_after_sii_accepted(self):
        doc = self._interrupted(reached_sii=True)
        self.Document._cron_send()
        # QueryEstDte says SII has it: accepted without a second upload.
        self.assertEqual(doc.state, 'accepted', doc.exchange_ids.mapped('summary'))
        self.assertFalse(doc.upload_started)
        self.assertEqual(self._receptions(doc), (1, 0))
        self.assertEqual(doc.exchange_ids.mapped('operation'), ['status'])

    def test_interrupted_after_sii_rejected(self):
        self.simulator.configure(reject_share=1.0)
        doc = self._interrupted(reached_sii=True)
        self.Document._cron_send()
        # Not received per QueryEstDte; the identical envelope is refused as already received
        # (STATUS 99): SII processed it once and rejected it.
        self.assertEqual(doc.state, 'rejected', doc.exchange_ids.mapped('summary'))
        self.assertIn('interruption', doc.sii_message)
        self.assertFalse(doc.upload_started)
        self.assertEqual(self._receptions(doc), (1, 1))
        # The user can correct and send again: a new envelope then.
        doc.move_id.action_l10n_cl_dte_send()
        self.assertEqual(doc.state, 'to_send')

    def test_interrupted_rejection_waits_for_the_grace_period(self):
        # Real SII may take a while to list a document it has: within the grace period the doubt
        # is kept (no rejection of what may yet be accepted), after it the rejection is recorded.
        self.env['ir.config_parameter'].sudo().set_param('l10n_cl_dte.upload_doubt_grace_minutes', '60')
        self.simulator.configure(reject_share=1.0)
        doc = self._interrupted(reached_sii=True)
        self.Document._cron_send()
        self.assertEqual(doc.state, 'to_send', doc.exchange_ids.mapped('summary'))
        self.assertTrue(doc.upload_started)
        self.assertIn('asking again later', doc.sii_message)
        doc.upload_started = fields.Datetime.subtract(fields.Datetime.now(), hours=2)
        self.Document._cron_send()
        self.assertEqual(doc.state, 'rejected', doc.exchange_ids.mapped('summary'))
        self.assertFalse(doc.upload_started)
        self.assertEqual(self._receptions(doc), (1, 2))

    def test_interrupted_before_reaching_sii(self):
        doc = self._interrupted(reached_sii=False)
        sent = base64.b64decode(doc.with_context(bin_size=False).upload_envelope_file)
        self.Document._cron_send()
        self.assertEqual(doc.state, 'sent', doc.exchange_ids.mapped('summary'))
        self.assertTrue(doc.track_id)
        self.assertFalse(doc.upload_started)
        self.assertEqual(self._receptions(doc), (1, 0))
        # The envelope SII got is the one saved before the interruption, byte for byte.
        envelope = next(e for e in self.simulator.state()['envelopes'] if e['trackid'] == doc.track_id)
        self.assertEqual(envelope['sha256'], hashlib.sha256(sent).hexdigest())
        doc.next_poll = False
        self.Document._cron_poll_status()
        self.assertEqual(doc.state, 'accepted')

    def test_sii_unreachable_keeps_the_marker(self):
        doc = self._interrupted(reached_sii=False)
        self.simulator.configure(faults=[{'service': 'estdte', 'kind': 'http_error', 'status': 503}])
        self.Document._cron_send()
        # SII cannot say whether it has the document: nothing is sent, the doubt is kept.
        self.assertEqual(doc.state, 'to_send')
        self.assertTrue(doc.upload_started)
        self.assertEqual(self._receptions(doc), (0, 0))
        self.simulator.configure(faults=[])
        self.Document._cron_send()
        self.assertEqual(doc.state, 'sent', doc.exchange_ids.mapped('summary'))
        self.assertEqual(self._receptions(doc), (1, 0))
