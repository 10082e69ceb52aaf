import json
import time
import uuid

from dte_native import webhooks

from odoo.tests import HttpCase, tagged
from odoo.tools import mute_logger

from .test_l10n_cl_dte import ISSUER_RUT, L10nClDteCommon

SECRET = 'test-webhook-secret-0123456789'


@tagged('post_install', '-at_install', 'post_install_l10n')
class TestL10nClDteWebhooks(L10nClDteCommon, HttpCase):
    """The webhook controllers over real HTTP: good, bad and replayed signatures, idempotence,
    clear 4xx answers, and the status update reaching the document and its batch."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env['ir.config_parameter'].sudo().set_param('l10n_cl_dte.webhook_secret', SECRET)

    def _post(self, event, payload, secret=SECRET, ts=None, signature=None, raw=None, headers=None):
        body = raw if raw is not None else json.dumps(payload).encode()
        ts = int(time.time()) if ts is None else ts
        sent = {'Content-Type': 'application/json', webhooks.TIMESTAMP_HEADER: str(ts),
                webhooks.SIGNATURE_HEADER: signature or webhooks.sign(secret, body, ts)}
        sent.update(headers or {})
        response = self.url_open('/l10n_cl_dte/webhook/%s' % event, data=body, headers=sent)
        return response.status_code, response.json()

    def _event(self, event, **fields):
        return {'event_id': str(uuid.uuid4()), 'event': event, **fields}

    def _sent_document(self):
        invoice = self._invoice('33')
        doc = invoice.l10n_cl_dte_document_id
        self.assertEqual(doc.state, 'to_send')
        doc.action_send_to_sii()
        self.assertTrue(doc.batch_id)
        return doc

    def test_status_update_good_signature_moves_the_document(self):
        doc = self._sent_document()
        batch = doc.batch_id
        self.assertEqual((batch.state, batch.progress), ('queued', 0.0))
        sent = self._event('status_update', company_rut=ISSUER_RUT, documents=[
            {'doc_type': doc.doc_type, 'folio': doc.folio, 'state': 'sent', 'track_id': '0123456789'}])
        status, data = self._post('status_update', sent)
        self.assertEqual(status, 200, data)
        self.assertEqual(data['result']['documents'], {doc.name: 'updated'})
        doc.invalidate_recordset()
        self.assertEqual((doc.state, doc.track_id), ('sent', '0123456789'))
        batch.invalidate_recordset()
        self.assertEqual(batch.state, 'running')

        accepted = self._event('status_update', documents=[
            {'doc_type': doc.doc_type, 'folio': doc.folio, 'state': 'accepted', 'message': 'EPR: aceptado'}])
        status, data = self._post('status_update', accepted)
        self.assertEqual(status, 200, data)
        doc.invalidate_recordset()
        batch.invalidate_recordset()
        self.assertEqual(doc.state, 'accepted')
        self.assertIn('aceptado', doc.sii_message)
        self.assertEqual((batch.state, batch.progress, batch.accepted_count), ('done', 100.0, 1))
        self.assertEqual(doc.exchange_ids[:1].operation, 'status')
        # The monitor page's data follow.
        rows = {r['id']: r for r in self.env['l10n_cl_dte.batch'].get_monitor_data()}
        self.assertEqual((rows[batch.id]['progress'], rows[batch.id]['accepted']), (100.0, 1))

        # A late, out-of-order 'sent' is ignored (the state machine does not go back).
        late = self._event('status_update', documents=[
            {'doc_type': doc.doc_type, 'folio': doc.folio, 'state': 'sent'}])
        status, data = self._post('status_update', late)
        self.assertEqual((status, data['result']['documents'][doc.name]), (200, 'ignored'))
        doc.invalidate_recordset()
        self.assertEqual(doc.state, 'accepted')

    def test_final_state_of_a_document_odoo_has_not_seen_sent(self):
        # The worker uploads and follows to the end, then reports only the final state.
        doc = self._sent_document()
        status, data = self._post('status_update', self._event('status_update', company_rut=ISSUER_RUT, documents=[
            {'doc_type': doc.doc_type, 'folio': doc.folio, 'state': 'accepted', 'track_id': '777',
             'message': 'EPR: aceptado'}]))
        self.assertEqual(status, 200, data)
        doc.invalidate_recordset()
        self.assertEqual((doc.state, doc.track_id), ('accepted', '777'))
        self.assertEqual(doc.exchange_ids.sorted('id').mapped('operation')[-2:], ['upload', 'status'])

    @mute_logger('odoo.addons.l10n_cl_dte.controllers.webhooks')
    def test_bad_signatures_are_refused(self):
        doc = self._sent_document()
        payload = self._event('status_update', documents=[
            {'doc_type': doc.doc_type, 'folio': doc.folio, 'state': 'sent'}])
        status, data = self._post('status_update', payload, secret='another-secret')
        self.assertEqual((status, data['error']), (401, 'webhook.bad_signature'))
        status, data = self._post('status_update', payload, signature='sha256=' + '0' * 64)
        self.assertEqual((status, data['error']), (401, 'webhook.bad_signature'))
        # Body changed after signing.
        body = json.dumps(payload).encode()
        ts = int(time.time())
        tampered = body.replace(b'"sent"', b'"rejected"')
        status, data = self._post('status_update', None, raw=tampered, ts=ts,
                                  signature=webhooks.sign(SECRET, body, ts))
        self.assertEqual((status, data['error']), (401, 'webhook.bad_signature'))
        # Missing signature, missing or malformed timestamp.
        response = self.url_open('/l10n_cl_dte/webhook/status_update', data=body,
                                 headers={webhooks.TIMESTAMP_HEADER: str(ts)})
        self.assertEqual((response.status_code, response.json()['error']), (401, 'webhook.missing_signature'))
        response = self.url_open('/l10n_cl_dte/webhook/status_update', data=body,
                                 headers={webhooks.SIGNATURE_HEADER: webhooks.sign(SECRET, body, ts)})
        self.assertEqual((response.status_code, response.json()['error']), (400, 'webhook.missing_timestamp'))
        status, data = self._post('status_update', payload, ts='yesterday', signature='sha256=00')
        self.assertEqual((status, data['error']), (400, 'webhook.malformed_timestamp'))
        doc.invalidate_recordset()
        self.assertEqual(doc.state, 'to_send')
        self.assertFalse(self.env['l10n_cl_dte.webhook.event'].search([('event_id', '=', payload['event_id'])]))

    @mute_logger('odoo.addons.l10n_cl_dte.controllers.webhooks')
    def test_replays_are_refused_or_idempotent(self):
        doc = self._sent_document()
        payload = self._event('status_update', documents=[
            {'doc_type': doc.doc_type, 'folio': doc.folio, 'state': 'sent', 'track_id': '42'}])
        # Outside the replay window (a captured request sent again later): refused.
        old = int(time.time()) - 3600
        status, data = self._post('status_update', payload, ts=old)
        self.assertEqual((status, data['error']), (401, 'webhook.stale_timestamp'))
        # Inside the window: applied once, then recognised as a duplicate and not applied again.
        ts = int(time.time())
        status, data = self._post('status_update', payload, ts=ts)
        self.assertEqual((status, data['status']), (200, 'ok'))
        exchanges = len(doc.exchange_ids)
        status, data = self._post('status_update', payload, ts=ts)
        self.assertEqual((status, data['status']), (200, 'duplicate'))
        doc.invalidate_recordset()
        self.assertEqual(len(doc.exchange_ids), exchanges)
        self.assertEqual(self.env['l10n_cl_dte.webhook.event'].search_count(
            [('event_id', '=', payload['event_id'])]), 1)
        # The same signed body replayed to another endpoint is refused (the body names its event).
        body = json.dumps(payload).encode()
        status, data = self._post('error_alert', None, raw=body, ts=ts, signature=webhooks.sign(SECRET, body, ts))
        self.assertEqual((status, data['error']), (400, 'event_mismatch'))

    def test_clear_errors_for_bad_payloads(self):
        status, data = self._post('status_update', None, raw=b'not json')
        self.assertEqual((status, data['error']), (400, 'malformed_json'))
        status, data = self._post('status_update', {'event': 'status_update'})
        self.assertEqual((status, data['error']), (400, 'malformed_event'))
        status, data = self._post('status_update', self._event('status_update', documents=[
            {'doc_type': 33, 'folio': 999999, 'state': 'accepted'}]))
        self.assertEqual((status, data['error']), (404, 'not_found'))
        status, data = self._post('status_update', self._event('status_update', documents=[
            {'doc_type': 33, 'folio': 1, 'state': 'teleported'}]))
        self.assertEqual((status, data['error']), (422, 'not_applicable'))
        status, data = self._post('nonsense', self._event('nonsense'))
        self.assertEqual(status, 404)
        # A failed event is not recorded: the worker may send it again once fixed.
        self.assertFalse(self.env['l10n_cl_dte.webhook.event'].search([('event', '=', 'status_update')]))

    def test_error_alert_and_sii_change(self):
        doc = self._sent_document()
        status, data = self._post('error_alert', self._event(
            'error_alert', severity='critical', message='upload failed 5 times: SII 503',
            documents=[{'doc_type': doc.doc_type, 'folio': doc.folio}]))
        self.assertEqual(status, 200, data)
        self.assertIn('SII 503', doc.message_ids[:1].body)
        status, data = self._post('sii_change', self._event(
            'sii_change', change='endpoint', message='maullin moved to a new host'))
        self.assertEqual(status, 200, data)
        events = self.env['l10n_cl_dte.webhook.event'].search([])
        self.assertEqual(set(events.mapped('event')), {'error_alert', 'sii_change'})
        self.assertEqual(events.filtered(lambda e: e.event == 'error_alert').severity, 'critical')

    def test_disabled_without_secret(self):
        self.env['ir.config_parameter'].sudo().set_param('l10n_cl_dte.webhook_secret', '')
        status, data = self._post('sii_change', self._event('sii_change', change='x'))
        self.assertEqual((status, data['error']), (503, 'webhooks_disabled'))

    def test_monitor_page_shows_live_progress(self):
        doc = self._sent_document()
        doc.batch_id.name = 'Tour batch'
        self.env.user.group_ids |= self.env.ref('base.group_user')
        self.assertIn('Tour batch', [r['name'] for r in self.env['l10n_cl_dte.batch'].get_monitor_data()])
        self.env.flush_all()
        self.start_tour('/odoo/action-l10n_cl_dte.l10n_cl_dte_batch_monitor_action',
                        'l10n_cl_dte_batch_monitor', login=self.env.user.login)
        doc.invalidate_recordset()
        self.assertEqual(doc.state, 'accepted')
