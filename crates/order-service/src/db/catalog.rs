//! The SKU catalogue learned from `InventoryAdjusted`, the checks that
//! admit an order (idempotency key, known SKUs, prices) in one round trip,
//! and the prices a process remembers from them.

use super::*;

/// What a new order must be checked against, read in one round trip.
pub struct Admission {
    /// The id of the order created with the request's `Idempotency-Key`.
    pub existing: Option<Uuid>,
    /// The order's SKUs not in the catalogue, in the given order.
    pub unknown_skus: Vec<String>,
    /// The catalogue price (amount, currency) of each known SKU of the
    /// order; `None` while the SKU has no price.
    pub prices: HashMap<String, Option<(i64, String)>>,
}

/// Looks up the order holding idempotency `key` (if any), which of `skus`
/// the catalogue does not know, and the prices of those it knows.
pub async fn admission(
    conn: &mut PgConnection,
    key: Option<&str>,
    skus: &[String],
) -> Result<Admission, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT (SELECT id FROM orders WHERE idempotency_key = $1) AS existing,
         ARRAY(SELECT s.sku FROM unnest($2::text[]) WITH ORDINALITY AS s (sku, n)
               WHERE NOT EXISTS (SELECT 1 FROM catalog c WHERE c.sku = s.sku) ORDER BY s.n)
           AS "unknown!: Vec<String>",
         ARRAY(SELECT c.sku FROM catalog c WHERE c.sku = ANY($2) ORDER BY c.sku)
           AS "known!: Vec<String>",
         ARRAY(SELECT c.price FROM catalog c WHERE c.sku = ANY($2) ORDER BY c.sku)
           AS "amounts!: Vec<Option<i64>>",
         ARRAY(SELECT c.currency FROM catalog c WHERE c.sku = ANY($2) ORDER BY c.sku)
           AS "currencies!: Vec<Option<String>>""#,
        key,
        skus
    )
    .fetch_one(conn)
    .await?;
    let (existing, unknown_skus) = (row.existing, row.unknown);
    let prices = row
        .known
        .into_iter()
        .zip(row.amounts.into_iter().zip(row.currencies))
        .map(|(sku, (amount, currency))| (sku, amount.zip(currency)))
        .collect();
    Ok(Admission {
        existing,
        unknown_skus,
        prices,
    })
}

/// The catalogue prices this process last read, so that a new order can be
/// priced without reading them first. Only the catalogue table is trusted:
/// [`NewOrder::insert`](super::NewOrder::insert) writes an order only if
/// its prices are still the table's, and the request reads the table when
/// it does not (another instance of the service, or this one's consumer,
/// may have learnt a new price since). Filled from admission reads only.
#[derive(Debug, Default)]
pub struct PriceCache {
    prices: std::sync::RwLock<HashMap<String, Option<(i64, String)>>>,
}

impl PriceCache {
    /// Most SKUs kept; past it the cache starts again from empty.
    pub const MAX_SKUS: usize = 65_536;

    /// The remembered prices of `skus`, if every one of them is remembered.
    pub fn get(&self, skus: &[String]) -> Option<HashMap<String, Option<(i64, String)>>> {
        let prices = self
            .prices
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        skus.iter()
            .map(|sku| prices.get(sku).map(|p| (sku.clone(), p.clone())))
            .collect()
    }

    /// Remembers `read`, prices as the catalogue table gave them.
    pub fn remember(&self, read: &HashMap<String, Option<(i64, String)>>) {
        let mut prices = self
            .prices
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if prices.len() + read.len() > Self::MAX_SKUS {
            prices.clear();
        }
        for (sku, price) in read {
            prices.insert(sku.clone(), price.clone());
        }
    }

    /// Forgets `skus` (one of their prices turned out to be old).
    pub fn forget(&self, skus: &[String]) {
        let mut prices = self
            .prices
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for sku in skus {
            prices.remove(sku);
        }
    }

    /// How many SKUs are remembered.
    pub fn len(&self) -> usize {
        self.prices
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A SKU as the catalogue knows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CatalogEntry {
    /// Units available as last adjusted.
    pub available: i32,
    /// Price of one unit in minor units of `currency`, if priced.
    pub price: Option<i64>,
    /// ISO 4217 code of `price`.
    pub currency: Option<String>,
}

/// `sku` as last adjusted, if known.
pub async fn catalog_entry(
    conn: &mut PgConnection,
    sku: &str,
) -> Result<Option<CatalogEntry>, sqlx::Error> {
    sqlx::query_as!(
        CatalogEntry,
        "SELECT available, price, currency FROM catalog WHERE sku = $1",
        sku
    )
    .fetch_optional(conn)
    .await
}

/// Records `sku` as of an `InventoryAdjusted` of `adjusted_at` (its
/// availability and price: the event carries the whole level), unless a
/// newer adjustment is already known.
pub async fn upsert_catalog(
    conn: &mut PgConnection,
    sku: &str,
    entry: &CatalogEntry,
    adjusted_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO catalog (sku, available, price, currency, adjusted_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, now()) \
         ON CONFLICT (sku) DO UPDATE SET available = EXCLUDED.available, \
         price = EXCLUDED.price, currency = EXCLUDED.currency, \
         adjusted_at = EXCLUDED.adjusted_at, updated_at = now() \
         WHERE catalog.adjusted_at <= EXCLUDED.adjusted_at",
        sku,
        entry.available,
        entry.price,
        entry.currency.as_deref(),
        adjusted_at
    )
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prices(entries: &[(&str, Option<i64>)]) -> HashMap<String, Option<(i64, String)>> {
        entries
            .iter()
            .map(|(sku, p)| (sku.to_string(), p.map(|p| (p, "EUR".to_owned()))))
            .collect()
    }

    #[test]
    fn the_cache_answers_only_for_orders_whose_every_sku_it_knows() {
        let cache = PriceCache::default();
        let skus = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(cache.get(&skus(&["A"])), None);
        cache.remember(&prices(&[("A", Some(100)), ("B", None)]));
        assert_eq!(
            cache.get(&skus(&["A", "B"])),
            Some(prices(&[("A", Some(100)), ("B", None)]))
        );
        assert_eq!(cache.get(&skus(&["A", "C"])), None, "C was never read");
        cache.remember(&prices(&[("A", Some(250))]));
        assert_eq!(cache.get(&skus(&["A"])), Some(prices(&[("A", Some(250))])));
        cache.forget(&skus(&["A"]));
        assert_eq!(cache.get(&skus(&["A"])), None);
        assert_eq!(cache.get(&skus(&["B"])), Some(prices(&[("B", None)])));
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = PriceCache::default();
        for i in 0..PriceCache::MAX_SKUS + 10 {
            cache.remember(&prices(&[(&format!("S-{i}"), Some(1))]));
            assert!(cache.len() <= PriceCache::MAX_SKUS);
        }
        assert!(!cache.is_empty());
    }
}
