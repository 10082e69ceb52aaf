"""Webhooks from `dte worker`: POST /l10n_cl_dte/webhook/<status_update|error_alert|sii_change>.

Each request carries ``X-DTE-Timestamp`` (Unix seconds) and ``X-DTE-Signature``
(``sha256=<hex>`` of HMAC-SHA256 over ``"<timestamp>." + body`` with the shared secret: system
parameter ``l10n_cl_dte.webhook_secret``, else the file in $DTE_WEBHOOK_SECRET_FILE); the body is
JSON with a unique ``event_id`` and ``event`` equal to the route's. Verification is
dte_native.webhooks; this controller maps its outcome to HTTP:

  200 applied, or {"status": "duplicate"} for an event already received (never applied twice)
  400 malformed request (JSON, headers, event mismatch)      401 bad/missing signature, stale timestamp
  404 unknown documents     413 body too large     422 valid but not applicable
  503 no secret configured (webhooks disabled)
"""
import json
import logging

from odoo import SUPERUSER_ID, http
from odoo.exceptions import ValidationError
from odoo.http import request

from ..models.l10n_cl_dte_ops import WEBHOOK_EVENTS, _NotFound, check_update_payload, webhook_secret

_logger = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
REPLAY_WINDOW_S = 300


def _answer(http_status, data):
    return request.make_json_response(data, status=http_status)


def _count(event, outcome):
    try:
        from dte_native import metrics  # noqa: PLC0415
        metrics.process_metrics().webhook_events.labels(event, outcome).inc()
    except ImportError:
        return  # metrics are optional: nothing to count without them


class L10nClDteWebhooks(http.Controller):

    @http.route('/l10n_cl_dte/webhook/<string:event>', type='http', auth='none', methods=['POST'],
                csrf=False, save_session=False, readonly=False)
    def l10n_cl_dte_webhook(self, event, **_kw):
        status, data = self._l10n_cl_dte_receive(event)
        _count(event if event in dict(WEBHOOK_EVENTS) else 'unknown', str(status))
        return _answer(status, data)

    def _l10n_cl_dte_receive(self, event):
        from dte_native import webhooks  # noqa: PLC0415

        if event not in dict(WEBHOOK_EVENTS):
            return 404, {'error': 'unknown_event', 'message': 'events: %s' % ', '.join(dict(WEBHOOK_EVENTS))}
        if not request.db:
            return 404, {'error': 'no_database', 'message': 'no database selected for this host'}
        length = request.httprequest.content_length
        if length is not None and length > MAX_BODY:
            return 413, {'error': 'too_large', 'message': 'body over %d bytes' % MAX_BODY}
        body = request.httprequest.get_data(cache=False)
        if len(body) > MAX_BODY:
            return 413, {'error': 'too_large', 'message': 'body over %d bytes' % MAX_BODY}
        env = request.env(user=SUPERUSER_ID, su=True)
        secret = webhook_secret(env)
        if not secret:
            return 503, {'error': 'webhooks_disabled',
                         'message': 'set the system parameter l10n_cl_dte.webhook_secret'}
        headers = request.httprequest.headers
        ts = headers.get(webhooks.TIMESTAMP_HEADER)
        try:
            webhooks.verify(secret, body, ts, headers.get(webhooks.SIGNATURE_HEADER), window=REPLAY_WINDOW_S)
        except (webhooks.WebhookSignatureError, webhooks.WebhookReplayError) as e:
            _logger.warning('webhook %s refused: %s', event, e.code)
            return 401, {'error': e.code, 'message': e.message}
        except webhooks.WebhookError as e:
            return 400, {'error': e.code, 'message': e.message}
        header_event = headers.get(webhooks.EVENT_HEADER)
        if header_event and header_event != event:
            return 400, {'error': 'event_mismatch', 'message': 'header says %s, route says %s' % (header_event, event)}
        try:
            payload = json.loads(body.decode('utf-8'))
        except (UnicodeDecodeError, ValueError):
            return 400, {'error': 'malformed_json', 'message': 'the body is not JSON'}
        try:
            event_id = check_update_payload(env, payload)
        except ValidationError as e:
            return 400, {'error': 'malformed_event', 'message': str(e)}
        if payload.get('event') != event:
            # The signature covers the body, so a body signed for one endpoint is refused by another.
            return 400, {'error': 'event_mismatch', 'message': 'body "event" must be %r' % event}
        Event = env['l10n_cl_dte.webhook.event']
        signed_at = _utc(int(ts))
        try:
            with env.cr.savepoint():
                record = Event._l10n_cl_dte_claim(event_id, event, signed_at, body.decode('utf-8'))
                if not record:
                    return 200, {'status': 'duplicate', 'event_id': event_id}
                result = record._l10n_cl_dte_handle(payload)
        except _NotFound as e:
            return 404, {'error': 'not_found', 'message': str(e)}
        except ValidationError as e:
            return 422, {'error': 'not_applicable', 'message': str(e)}
        return 200, {'status': 'ok', 'event_id': event_id, 'result': result}


def _utc(ts):
    import datetime  # noqa: PLC0415
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).replace(tzinfo=None)
