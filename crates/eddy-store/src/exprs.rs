//! DataFusion expressions and frames the plans share: time ranges, property filter values,
//! the events of a predicate. Values are literals, never SQL text.

use datafusion::prelude::{DataFrame, Expr, SessionContext, ident, lit};
use datafusion::scalar::ScalarValue;

use crate::Result;
use crate::schema::{TZ, encode_property};

/// A timestamp literal (ns, UTC).
pub(crate) fn ts(ns: i64) -> Expr {
    lit(ScalarValue::TimestampNanosecond(Some(ns), Some(TZ.into())))
}

/// The stored encodings a property filter value may match: a string, and, when it reads as
/// one, a number or a boolean.
pub(crate) fn property_candidates(v: &str) -> Vec<Expr> {
    let mut out = vec![lit(encode_property(&Some(eddy_model::Value::String(
        v.to_string(),
    ))))];
    if let Ok(n) = v.parse::<f64>()
        && n.is_finite()
    {
        out.push(lit(encode_property(&Some(eddy_model::Value::Number(n)))));
    }
    if let Ok(b) = v.parse::<bool>() {
        out.push(lit(encode_property(&Some(eddy_model::Value::Bool(b)))));
    }
    out
}

/// `time` in `[from, to)`.
pub(crate) fn in_range(from: i64, to: i64) -> Expr {
    ident("time").gt_eq(ts(from)).and(ident("time").lt(ts(to)))
}

/// The events of `ctx` matching `pred`.
pub(crate) async fn events_in(ctx: &SessionContext, pred: Expr) -> Result<DataFrame> {
    Ok(ctx.table("events").await?.filter(pred)?)
}
