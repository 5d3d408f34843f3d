//! Resource accounting for one node: fixed-point amounts (1/10000 units, as
//! Ray does, so fractional GPUs add up exactly), requests, and the per-GPU
//! instances that decide `CUDA_VISIBLE_DEVICES`.
//!
//! Everything here is pure: no IO, unit-tested below.

use std::collections::BTreeMap;
use std::sync::Arc;

/// Fixed-point scale: 1.0 of a resource is 10_000 units.
pub const UNIT: i64 = 10_000;

/// Convert a user amount to units; `None` for negative, NaN or infinite.
pub fn to_units(amount: f64) -> Option<i64> {
    if !amount.is_finite() || amount < 0.0 {
        return None;
    }
    Some((amount * UNIT as f64).round() as i64)
}

pub fn to_float(units: i64) -> f64 {
    units as f64 / UNIT as f64
}

/// A bag of named resources in units. Names are kept sorted for stable output.
///
/// Shared, copied on write: a task's request is also its scheduling class,
/// the key of its queue and its worker's lease, and is cloned and compared
/// for each of those on every dispatch. A clone is a count, and two clones
/// of one request compare equal by pointer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ResourceSet(Arc<BTreeMap<String, i64>>);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResourceError {
    #[error("resource {name:?} has an invalid amount {amount} (must be a finite number >= 0)")]
    InvalidAmount { name: String, amount: f64 },
    #[error("GPU request of {0} must be a whole number when larger than 1")]
    FractionalMultiGpu(f64),
    #[error("resource name must not be empty")]
    EmptyName,
}

impl ResourceSet {
    /// Parse a wire map, dropping zero amounts.
    pub fn from_map<'a>(
        map: impl IntoIterator<Item = (&'a String, &'a f64)>,
    ) -> Result<Self, ResourceError> {
        let mut out = BTreeMap::new();
        for (name, &amount) in map {
            if name.is_empty() {
                return Err(ResourceError::EmptyName);
            }
            let units = to_units(amount).ok_or_else(|| ResourceError::InvalidAmount {
                name: name.clone(),
                amount,
            })?;
            if units > 0 {
                out.insert(name.clone(), units);
            }
        }
        Ok(Self(Arc::new(out)))
    }

    pub fn get(&self, name: &str) -> i64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// Every amount in `request` is at most what `self` has.
    pub fn contains(&self, request: &ResourceSet) -> bool {
        request.0.iter().all(|(k, v)| self.get(k) >= *v)
    }

    pub fn add(&mut self, other: &ResourceSet) {
        for (k, v) in other.0.iter() {
            self.adjust(k, *v);
        }
    }

    /// Subtract; amounts may go negative (a blocked worker taking its CPU back
    /// oversubscribes briefly).
    pub fn subtract(&mut self, other: &ResourceSet) {
        for (k, v) in other.0.iter() {
            self.adjust(k, -*v);
        }
    }

    /// Add `delta` units (negative: take) of one resource.
    pub fn adjust(&mut self, name: &str, delta: i64) {
        let map = Arc::make_mut(&mut self.0);
        match map.get_mut(name) {
            Some(v) => *v += delta,
            None => {
                map.insert(name.to_string(), delta);
            }
        }
    }

    /// The same set without `name`.
    pub fn without(&self, name: &str) -> ResourceSet {
        if !self.0.contains_key(name) {
            return self.clone();
        }
        let mut map = (*self.0).clone();
        map.remove(name);
        Self(Arc::new(map))
    }

    /// The same set with negative amounts shown as 0.
    pub fn clamped_at_zero(&self) -> ResourceSet {
        if self.0.values().all(|v| *v >= 0) {
            return self.clone();
        }
        Self(Arc::new(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), (*v).max(0)))
                .collect(),
        ))
    }

    /// Names and amounts, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &i64)> {
        self.0.iter()
    }

    pub fn to_map(&self) -> std::collections::HashMap<String, f64> {
        self.0
            .iter()
            .map(|(k, v)| (k.clone(), to_float(*v)))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for ResourceSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("{")?;
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{k}: {}", to_float(*v))?;
        }
        f.write_str("}")
    }
}

/// The GPUs of a node, each with a free capacity of up to one unit, so that
/// fractional requests share a device and whole ones get devices of their own.
#[derive(Clone, Debug, Default)]
pub struct GpuInstances {
    /// Free units per GPU index.
    free: Vec<i64>,
}

impl GpuInstances {
    pub fn new(count: usize) -> Self {
        Self {
            free: vec![UNIT; count],
        }
    }

    /// Pick devices for `units` of GPU: whole devices for requests of one or
    /// more, else the fullest device that still fits (to keep others free).
    pub fn acquire(&mut self, units: i64) -> Option<Vec<usize>> {
        if units <= 0 {
            return Some(Vec::new());
        }
        if units >= UNIT {
            let wanted = (units / UNIT) as usize;
            let free: Vec<usize> = (0..self.free.len())
                .filter(|&i| self.free[i] == UNIT)
                .collect();
            if free.len() < wanted {
                return None;
            }
            let chosen = free[..wanted].to_vec();
            for &i in &chosen {
                self.free[i] = 0;
            }
            return Some(chosen);
        }
        let best = (0..self.free.len())
            .filter(|&i| self.free[i] >= units)
            .min_by_key(|&i| self.free[i])?;
        self.free[best] -= units;
        Some(vec![best])
    }

    /// Whether `acquire(units)` would succeed now.
    pub fn can_acquire(&self, units: i64) -> bool {
        if units <= 0 {
            return true;
        }
        if units >= UNIT {
            let whole = self.free.iter().filter(|&&f| f == UNIT).count();
            return whole >= (units / UNIT) as usize;
        }
        self.free.iter().any(|&f| f >= units)
    }

    pub fn release(&mut self, devices: &[usize], units: i64) {
        if units >= UNIT {
            for &i in devices {
                if let Some(f) = self.free.get_mut(i) {
                    *f = UNIT;
                }
            }
        } else if let Some(&i) = devices.first() {
            if let Some(f) = self.free.get_mut(i) {
                *f = (*f + units).min(UNIT);
            }
        }
    }
}

/// A validated task resource request.
pub fn task_request(
    map: &std::collections::HashMap<String, f64>,
) -> Result<ResourceSet, ResourceError> {
    let set = ResourceSet::from_map(map)?;
    let gpu = set.get("GPU");
    if gpu > UNIT && gpu % UNIT != 0 {
        return Err(ResourceError::FractionalMultiGpu(to_float(gpu)));
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn set(pairs: &[(&str, f64)]) -> ResourceSet {
        let map: HashMap<String, f64> = pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        ResourceSet::from_map(&map).unwrap()
    }

    #[test]
    fn fractions_add_up_exactly() {
        let mut avail = set(&[("GPU", 1.0)]);
        let tenth = set(&[("GPU", 0.1)]);
        for _ in 0..10 {
            assert!(avail.contains(&tenth));
            avail.subtract(&tenth);
        }
        assert_eq!(avail.get("GPU"), 0);
        assert!(!avail.contains(&tenth));
    }

    #[test]
    fn contains_checks_every_resource() {
        let total = set(&[("CPU", 2.0), ("custom", 1.0)]);
        assert!(total.contains(&set(&[("CPU", 2.0)])));
        assert!(!total.contains(&set(&[("CPU", 1.0), ("other", 1.0)])));
        assert!(total.contains(&set(&[])));
    }

    #[test]
    fn a_clone_keeps_its_amounts_when_the_original_changes() {
        let mut avail = set(&[("CPU", 2.0)]);
        let before = avail.clone();
        avail.subtract(&set(&[("CPU", 1.0), ("custom", 1.0)]));
        avail.adjust("CPU", -UNIT / 2);
        assert_eq!(avail.get("CPU"), UNIT / 2);
        assert_eq!(avail.get("custom"), -UNIT);
        assert_eq!(before.get("CPU"), 2 * UNIT);
        assert_eq!(before.get("custom"), 0);
        assert_ne!(avail, before);
        avail.adjust("CPU", UNIT * 3 / 2);
        avail.add(&set(&[("custom", 1.0)]));
        // Equal by value: a zero left behind by the adjustments is still a name.
        assert_eq!(avail.get("CPU"), 2 * UNIT);
        assert_eq!(avail.without("custom"), before);
    }

    #[test]
    fn without_and_clamping_leave_the_set_itself_alone() {
        let mut avail = set(&[("CPU", 1.0), ("GPU", 1.0)]);
        avail.adjust("CPU", -2 * UNIT);
        let shown = avail.clamped_at_zero();
        assert_eq!(shown.get("CPU"), 0);
        assert_eq!(shown.get("GPU"), UNIT);
        assert_eq!(avail.get("CPU"), -UNIT);
        let no_cpu = avail.without("CPU");
        assert_eq!(no_cpu.get("CPU"), 0);
        assert_eq!(no_cpu.iter().count(), 1);
        assert_eq!(avail.iter().count(), 2);
        assert_eq!(avail.without("absent"), avail);
    }

    #[test]
    fn invalid_amounts_are_refused() {
        let mut map = HashMap::new();
        map.insert("CPU".to_string(), -1.0);
        assert!(ResourceSet::from_map(&map).is_err());
        map.insert("CPU".to_string(), f64::NAN);
        assert!(ResourceSet::from_map(&map).is_err());
        let mut map = HashMap::new();
        map.insert("GPU".to_string(), 1.5);
        assert!(matches!(
            task_request(&map),
            Err(ResourceError::FractionalMultiGpu(_))
        ));
    }

    #[test]
    fn gpu_instances_share_fractions_and_reserve_wholes() {
        let mut gpus = GpuInstances::new(2);
        let a = gpus.acquire(UNIT / 2).unwrap();
        let b = gpus.acquire(UNIT / 2).unwrap();
        assert_eq!(a, b, "two halves pack onto one device");
        let whole = gpus.acquire(UNIT).unwrap();
        assert_ne!(whole, a);
        assert!(gpus.acquire(UNIT / 4).is_none());
        gpus.release(&a, UNIT / 2);
        assert_eq!(gpus.acquire(UNIT / 4).unwrap(), a);
        gpus.release(&whole, UNIT);
        assert_eq!(gpus.acquire(UNIT).unwrap(), whole);
    }

    #[test]
    fn fragmented_fractions_do_not_fit_a_larger_fraction() {
        // 0.4 free on each of two devices: 0.8 GPU in total, but not on one device.
        let mut gpus = GpuInstances::new(2);
        gpus.acquire(UNIT * 6 / 10).unwrap();
        gpus.acquire(UNIT * 6 / 10).unwrap();
        assert!(!gpus.can_acquire(UNIT * 8 / 10));
        assert!(gpus.acquire(UNIT * 8 / 10).is_none());
        assert!(gpus.can_acquire(UNIT * 4 / 10));
    }
}
