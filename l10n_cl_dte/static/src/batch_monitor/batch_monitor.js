/** The DTE batch monitor: recent sending batches with live progress, refreshed every few seconds. */
import { Component, onWillStart, onWillUnmount, useState } from "@odoo/owl";
import { registry } from "@web/core/registry";
import { useService } from "@web/core/utils/hooks";

export const REFRESH_MS = 3000;

export class BatchMonitor extends Component {
    static template = "l10n_cl_dte.BatchMonitor";
    static props = ["*"];

    setup() {
        this.orm = useService("orm");
        this.action = useService("action");
        this.state = useState({ batches: [], updated: "", error: "" });
        onWillStart(() => this.refresh());
        this.timer = setInterval(() => this.refresh(), REFRESH_MS);
        onWillUnmount(() => clearInterval(this.timer));
    }

    async refresh() {
        try {
            this.state.batches = await this.orm.call("l10n_cl_dte.batch", "get_monitor_data", []);
            this.state.updated = new Date().toLocaleTimeString();
            this.state.error = "";
        } catch (e) {
            this.state.error = (e && e.message) || String(e);
        }
    }

    openBatch(batchId) {
        this.action.doAction({
            type: "ir.actions.act_window",
            res_model: "l10n_cl_dte.batch",
            res_id: batchId,
            views: [[false, "form"]],
        });
    }
}

registry.category("actions").add("l10n_cl_dte.batch_monitor", BatchMonitor);
