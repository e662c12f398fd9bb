//! The fixed list of families, the mapping from a run's task index to a [`TaskRef`], and the
//! bounded instance cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::framework::{Family, Instance, TaskRef, TaskSpec};
use crate::util::{mix, name_hash, permute};

/// Consecutive tasks of one family share an instance in groups of this size.
pub const INSTANCE_GROUP: u64 = 8;

/// Every family, in a fixed order (the order of `envs list`).
pub struct Registry {
    families: Vec<Arc<dyn Family>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// All families of this build, in list order.
    pub fn new() -> Self {
        Registry { families: crate::families::all() }
    }

    /// A registry over an explicit family list (tests, tools).
    pub fn from_families(families: Vec<Arc<dyn Family>>) -> Self {
        Registry { families }
    }

    /// Every family of the registry, in list order (available or not).
    pub fn families(&self) -> &[Arc<dyn Family>] {
        &self.families
    }

    /// The families available on this machine, in list order.
    pub fn available(&self) -> Vec<Arc<dyn Family>> {
        self.families.iter().filter(|f| f.availability().is_available()).cloned().collect()
    }

    /// The family named `name`, if registered.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Family>> {
        self.families.iter().find(|f| f.name() == name)
    }

    /// Like [`Registry::get`], but an unknown name is an error listing the known ones.
    pub fn try_get(&self, name: &str) -> Result<&Arc<dyn Family>> {
        self.get(name).ok_or_else(|| Error::UnknownFamily {
            name: name.to_owned(),
            known: self.families.iter().map(|f| f.name()).collect::<Vec<_>>().join(", "),
        })
    }

    /// Validate a family selection (empty = all available). Named families must exist and be
    /// available; they keep list order.
    pub fn select(&self, names: &[&str]) -> Result<Selection> {
        let families = if names.is_empty() {
            self.available()
        } else {
            for n in names {
                let f = self.try_get(n)?;
                if let crate::Availability::Unavailable { reason } = f.availability() {
                    return Err(Error::Unavailable { family: (*n).to_owned(), reason });
                }
            }
            self.families.iter().filter(|f| names.contains(&f.name())).cloned().collect()
        };
        if families.is_empty() {
            return Err(Error::EmptySelection);
        }
        Ok(Selection { families })
    }

    /// Task `index` of a run with `run_seed` over `families` (empty = all available); see
    /// [`Selection::task_ref`].
    pub fn task_ref(&self, families: &[&str], run_seed: u64, index: u64) -> Result<TaskRef> {
        Ok(self.select(families)?.task_ref(run_seed, index))
    }

    /// Build (or fetch from `cache`) the instance of `r` and generate its task. Checks the family
    /// exists and is available, the version matches and both seeds are in range.
    pub fn task(
        &self,
        cache: &InstanceCache,
        r: &TaskRef,
    ) -> Result<(Arc<dyn Instance>, TaskSpec)> {
        let family = self.check(r)?;
        let instance = cache.get_or_build(family.as_ref(), r.instance_seed)?;
        let task = instance.task(r.task_seed)?;
        Ok((instance, task))
    }

    /// Everything [`Registry::task`] checks before building anything: the family exists and is
    /// available, the version matches and both seeds are in range. Returns the family.
    pub fn check(&self, r: &TaskRef) -> Result<&Arc<dyn Family>> {
        let family = self.try_get(&r.family)?;
        if family.version() != r.version {
            return Err(Error::VersionMismatch {
                id: r.to_string(),
                family: r.family.clone(),
                requested: r.version,
                current: family.version(),
            });
        }
        if let crate::Availability::Unavailable { reason } = family.availability() {
            return Err(Error::Unavailable { family: r.family.clone(), reason });
        }
        Error::check_task_seed(&r.family, r.task_seed, family.tasks_per_instance())?;
        Error::check_instance_seed(&r.family, r.instance_seed, family.instances())?;
        Ok(family)
    }
}

/// A validated, non-empty list of available families.
#[derive(Clone)]
pub struct Selection {
    families: Vec<Arc<dyn Family>>,
}

impl Selection {
    /// The selected families, in list order.
    pub fn families(&self) -> &[Arc<dyn Family>] {
        &self.families
    }

    /// Task `index` goes to family `index mod F` (round robin); the family's `k = index / F`-th
    /// task is drawn **without replacement** from a fixed, seeded permutation of its tasks:
    /// - a family with a finite task list (a package) walks a permutation of that list, a new
    ///   one each time the list is exhausted;
    /// - a built-in family walks its instances in groups of [`INSTANCE_GROUP`] consecutive tasks
    ///   (they share the cached instance), each instance once per round in a permuted order, and
    ///   an instance's `s`-th task seed is a permutation of its task seeds, so no
    ///   `(instance, task)` pair repeats before all `instances × tasks` are drawn.
    ///
    /// Keys are mixed from `(run_seed, family, ...)` by splitmix64 (stable across platforms).
    pub fn task_ref(&self, run_seed: u64, index: u64) -> TaskRef {
        let n = self.families.len() as u64;
        let family = &self.families[(index % n) as usize];
        let k = index / n;
        let fh = name_hash(family.name());
        if let Some(count) = family.task_count().filter(|c| *c > 0) {
            let j = permute(k % count, count, mix(&[run_seed, fh, k / count, 3]));
            if let Some(r) = family.task_at(j) {
                return r;
            }
        }
        let instances = family.instances().max(1);
        let tasks = family.tasks_per_instance().max(1);
        let group = k / INSTANCE_GROUP;
        let round = group / instances;
        let instance_seed = permute(group % instances, instances, mix(&[run_seed, fh, round, 1]));
        let slot = round * INSTANCE_GROUP + k % INSTANCE_GROUP;
        let task_key = mix(&[run_seed, fh, instance_seed, slot / tasks, 2]);
        TaskRef {
            family: family.name().to_owned(),
            version: family.version(),
            instance_seed,
            task_seed: permute(slot % tasks, tasks, task_key),
        }
    }
}

type Key = (&'static str, u64);

struct CacheInner {
    map: HashMap<Key, (Arc<dyn Instance>, u64)>,
    tick: u64,
}

/// Bounded LRU of built instances keyed by `(family, instance_seed)`; thread-safe. Building
/// happens outside the lock, so two threads may build the same instance once each.
pub struct InstanceCache {
    capacity: usize,
    inner: Mutex<CacheInner>,
}

impl InstanceCache {
    /// An empty cache that holds at most `capacity` instances (at least one).
    pub fn new(capacity: usize) -> Self {
        InstanceCache {
            capacity: capacity.max(1),
            inner: Mutex::new(CacheInner { map: HashMap::new(), tick: 0 }),
        }
    }

    /// The cached instance, or build it (checking the seed range) and cache it.
    pub fn get_or_build(
        &self,
        family: &dyn Family,
        instance_seed: u64,
    ) -> Result<Arc<dyn Instance>> {
        let key = (family.name(), instance_seed);
        if let Ok(mut inner) = self.inner.lock() {
            inner.tick += 1;
            let tick = inner.tick;
            if let Some(entry) = inner.map.get_mut(&key) {
                entry.1 = tick;
                return Ok(entry.0.clone());
            }
        }
        Error::check_instance_seed(family.name(), instance_seed, family.instances())?;
        let built = family.instance(instance_seed)?;
        if let Ok(mut inner) = self.inner.lock() {
            inner.tick += 1;
            let tick = inner.tick;
            inner.map.insert(key, (built.clone(), tick));
            while inner.map.len() > self.capacity {
                let oldest = inner.map.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| *k);
                match oldest {
                    Some(k) => inner.map.remove(&k),
                    None => break,
                };
            }
        }
        Ok(built)
    }

    /// How many instances are cached now.
    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.map.len())
    }

    /// True when no instance is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for InstanceCache {
    fn default() -> Self {
        InstanceCache::new(256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn draws_never_repeat_a_task_and_share_instances_in_groups() -> Result<()> {
        let reg = Registry::new();
        let sel = reg.select(&["trip", "sql"])?;
        let mut seen = HashSet::new();
        for i in 0..20_000u64 {
            let r = sel.task_ref(7, i);
            assert_eq!(r.family, if i % 2 == 0 { "trip" } else { "sql" });
            assert!(seen.insert(r.clone()), "task {r} drawn twice (index {i})");
            assert_eq!(r, sel.task_ref(7, i), "drawing is deterministic");
        }
        // The 8 consecutive tasks of a family share one instance.
        let group: Vec<u64> = (0..8).map(|k| sel.task_ref(7, 2 * k).instance_seed).collect();
        assert!(group.iter().all(|&s| s == group[0]), "{group:?}");
        // Another run seed draws another sequence.
        assert_ne!(sel.task_ref(7, 0), sel.task_ref(8, 0));
        Ok(())
    }
}
