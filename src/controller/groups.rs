//! Secondary indexes over a watch: the names of objects per group ("the pods of namespace shop
//! labelled app=web", "the policies of namespace shop"), maintained from the watch's own events,
//! so that a lookup touches the members of one group instead of scanning the whole cache. A
//! relist builds a fresh index and swaps it in when complete, as the reflector's store does.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{PoisonError, RwLock},
};

use kube::{Resource, ResourceExt, runtime::watcher::Event};

#[derive(Default)]
struct Index {
    /// Group → the ids ("namespace/name") of its members.
    members: HashMap<String, BTreeSet<String>>,
    /// Id → the groups it is in (to leave them when it changes or goes).
    groups: HashMap<String, Vec<String>>,
}

impl Index {
    fn remove(&mut self, id: &str) {
        for group in self.groups.remove(id).into_iter().flatten() {
            if let Some(members) = self.members.get_mut(&group) {
                members.remove(id);
                if members.is_empty() {
                    self.members.remove(&group);
                }
            }
        }
    }

    fn insert(&mut self, id: String, groups: Vec<String>) {
        self.remove(&id);
        for group in &groups {
            self.members.entry(group.clone()).or_default().insert(id.clone());
        }
        self.groups.insert(id, groups);
    }
}

/// Groups of one kind of object; `of` names the groups an object belongs to.
pub struct Groups<K> {
    of: fn(&K) -> Vec<String>,
    live: RwLock<Index>,
    relisting: RwLock<Option<Index>>,
}

/// An object's id in the groups: "namespace/name".
pub fn id(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The namespace and name of an id.
pub fn split(id: &str) -> (&str, &str) {
    id.split_once('/').unwrap_or(("", id))
}

impl<K: Resource> Groups<K> {
    pub fn new(of: fn(&K) -> Vec<String>) -> Self {
        Self {
            of,
            live: RwLock::default(),
            relisting: RwLock::default(),
        }
    }

    /// Groups over `objects` as they are now (for an index built from a snapshot in tests).
    #[cfg(test)]
    pub fn filled<'a>(of: fn(&K) -> Vec<String>, objects: impl IntoIterator<Item = &'a K>) -> Self
    where
        K: 'a,
    {
        let groups = Self::new(of);
        for obj in objects {
            groups
                .live
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id(&obj.namespace().unwrap_or_default(), &obj.name_any()), of(obj));
        }
        groups
    }

    /// Follows one event of the watch.
    pub fn observe(&self, event: &Event<K>) {
        let key = |obj: &K| id(&obj.namespace().unwrap_or_default(), &obj.name_any());
        match event {
            Event::Init => {
                *self.relisting.write().unwrap_or_else(PoisonError::into_inner) = Some(Index::default());
            }
            Event::InitApply(obj) => {
                if let Some(index) = self
                    .relisting
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .as_mut()
                {
                    index.insert(key(obj), (self.of)(obj));
                }
            }
            Event::InitDone => {
                if let Some(index) = self
                    .relisting
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take()
                {
                    *self.live.write().unwrap_or_else(PoisonError::into_inner) = index;
                }
            }
            Event::Apply(obj) => self
                .live
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key(obj), (self.of)(obj)),
            Event::Delete(obj) => self
                .live
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key(obj)),
        }
    }

    /// The ids of the members of `group`.
    pub fn members(&self, group: &str) -> Vec<String> {
        self.live
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .members
            .get(group)
            .map(|m| m.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// How many members `group` has.
    pub fn count(&self, group: &str) -> usize {
        self.live
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .members
            .get(group)
            .map_or(0, BTreeSet::len)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;

    use super::*;

    fn cm(ns: &str, name: &str, labels: &[(&str, &str)]) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.namespace = Some(ns.into());
        c.metadata.name = Some(name.into());
        c.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        c
    }

    fn by_label(c: &ConfigMap) -> Vec<String> {
        let ns = c.namespace().unwrap_or_default();
        let mut groups = vec![ns.clone()];
        groups.extend(c.labels().iter().map(|(k, v)| format!("{ns}\0{k}={v}")));
        groups
    }

    #[test]
    fn groups_follow_applies_deletes_and_relists() {
        let g = Groups::new(by_label);
        g.observe(&Event::Apply(cm("shop", "a", &[("app", "web")])));
        g.observe(&Event::Apply(cm("shop", "b", &[("app", "web")])));
        g.observe(&Event::Apply(cm("other", "c", &[("app", "web")])));
        assert_eq!(g.members("shop\0app=web"), ["shop/a", "shop/b"]);
        assert_eq!(g.count("shop"), 2);
        // A label change moves the object between groups.
        g.observe(&Event::Apply(cm("shop", "b", &[("app", "api")])));
        assert_eq!(g.members("shop\0app=web"), ["shop/a"]);
        assert_eq!(g.members("shop\0app=api"), ["shop/b"]);
        g.observe(&Event::Delete(cm("shop", "a", &[("app", "web")])));
        assert!(g.members("shop\0app=web").is_empty());
        assert_eq!(g.count("shop"), 1);
        // A relist: the old index answers until the new one is complete, then only what was listed.
        g.observe(&Event::Init);
        g.observe(&Event::InitApply(cm("shop", "d", &[("app", "web")])));
        assert_eq!(g.members("shop\0app=api"), ["shop/b"], "still the old index");
        g.observe(&Event::InitDone);
        assert_eq!(g.members("shop\0app=web"), ["shop/d"]);
        assert!(g.members("shop\0app=api").is_empty(), "b was not relisted: gone");
        assert_eq!(g.members("other\0app=web"), Vec::<String>::new());
    }

    #[test]
    fn ids_split_back() {
        assert_eq!(split(&id("shop", "web")), ("shop", "web"));
    }
}
