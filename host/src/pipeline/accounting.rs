//! CPU accounting: each invocation's fuel and wall time charged to its
//! plugin and, when `[plugin.accounting] tenant_field` names a field the
//! entry carries, to that tenant.

use super::PluginContext;
use crate::plugin::{Field, Invocation};

/// Charges one invocation (whatever it came to: a trap burns fuel too).
pub(crate) fn charge(ctx: &PluginContext, fields: &[Field], invocation: &Invocation) {
    let tenant = ctx
        .config
        .accounting
        .tenant_field
        .as_deref()
        .and_then(|name| fields.iter().find(|f| f.name == name))
        .map(|f| f.value.as_slice());
    ctx.metrics
        .release
        .charge(tenant, invocation.fuel, invocation.elapsed.as_secs_f64());
}
