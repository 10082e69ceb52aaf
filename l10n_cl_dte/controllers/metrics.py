"""GET /l10n_cl_dte/metrics: Prometheus text format, behind a bearer token.

The token is the system parameter ``l10n_cl_dte.metrics_token`` (else the file in
$DTE_METRICS_TOKEN_FILE, else $DTE_METRICS_TOKEN); none configured means nobody gets in (403).
401 without ``Authorization: Bearer ...``, 403 with a wrong token. The content: this process's
SII call metrics (dte_native.metrics; summed over Odoo workers when PROMETHEUS_MULTIPROC_DIR is
set) and, read from the database at each scrape, documents by state and type, folios and days
left per CAF, days left per certificate and the documents of unfinished batches.
"""
import logging

from odoo import SUPERUSER_ID, http
from odoo.http import request

from ..models.l10n_cl_dte_ops import metric_samples, metrics_token

_logger = logging.getLogger(__name__)


class L10nClDteMetrics(http.Controller):

    @http.route('/l10n_cl_dte/metrics', type='http', auth='none', methods=['GET'], save_session=False)
    def l10n_cl_dte_metrics(self, **_kw):
        from dte_native import metrics  # noqa: PLC0415

        if not request.db:
            return request.make_response('no database selected\n', status=404)
        env = request.env(user=SUPERUSER_ID, su=True)
        status = metrics.check_bearer(request.httprequest.headers.get('Authorization'), metrics_token(env))
        if status == 401:
            return request.make_response(
                "metrics need 'Authorization: Bearer <token>'\n", status=401,
                headers=[('WWW-Authenticate', 'Bearer realm="l10n_cl_dte"'), ('Content-Type', 'text/plain')])
        if status == 403:
            return request.make_response('wrong or unconfigured metrics token\n', status=403,
                                         headers=[('Content-Type', 'text/plain')])
        registry = metrics.process_metrics()
        try:
            samples = metric_samples(env)
        except Exception:  # noqa: BLE001 - report the process metrics even if the DB part fails
            _logger.exception('l10n_cl_dte metrics: reading the database failed')
            samples = []
        body = registry.render(samples)
        return request.make_response(body, headers=[('Content-Type', metrics.CONTENT_TYPE)])
