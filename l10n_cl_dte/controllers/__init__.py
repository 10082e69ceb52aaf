from . import metrics
from . import webhooks
