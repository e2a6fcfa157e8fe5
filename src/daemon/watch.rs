//! What each daemon cycle reads of GitLab: everything once, then only what may have changed.
//!
//! The first cycle (and every cycle with `--sweep-period 0`) reads every desired GitLab
//! resource, as `reconcile plan` does. Later cycles read:
//! - the inventory, 2 requests: the projects GitLab updated since the last look
//!   (`GET /projects?order_by=updated_at&updated_after=…`: project settings, renames, transfers)
//!   and the 100 most recently updated users (`GET /users?order_by=updated_at&sort=desc`, whose
//!   entries are the users' live state, compared with the last observation);
//! - the projects and users named by GitLab's system hooks since the last cycle (members,
//!   project events; `daemon::http`);
//! - projects whose last read failed, projects with a desired resource the last observation
//!   does not cover (new in the desired state), and projects the daemon just wrote to;
//! - a rotation through the fleet: `projects × elapsed ÷ sweep_period` more projects per cycle,
//!   so every project, with the kinds no hook or filter reveals (CI/CD variables, protected
//!   branches), is read at least once per sweep period; each turn of the rotation also reads
//!   every user again (deleted users leave no trace in the inventory).
//!
//! The rest is the last observation. An apply re-reads what it touches first (`verify`), so a
//! stale observation can make the daemon hold or skip a change, never write an outdated one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use gitlab::api::{self, AsyncQuery};
use serde_json::Value as Json;
use tokio::time::Instant;

use crate::address::Address;
use crate::live::{Desired, Live, LiveState, Observed};
use crate::providers::gitlab::Gitlab;

/// What GitLab's system hooks (or the daemon's own writes) say may have changed.
#[derive(Debug, Default)]
pub struct Dirty {
    /// Project paths (lowercase, with namespace).
    pub projects: BTreeSet<String>,
    /// Some user may have changed.
    pub users: bool,
}

impl Dirty {
    /// Marks what a system hook event names. Unknown events mark nothing.
    pub fn hook(&mut self, event: &Json) {
        let name = event["event_name"].as_str().unwrap_or_default();
        for key in [
            "path_with_namespace",
            "old_path_with_namespace",
            "project_path_with_namespace",
        ] {
            if let Some(path) = event[key].as_str() {
                self.projects.insert(path.to_lowercase());
            }
        }
        if name.starts_with("user_") && !name.ends_with("_team") && !name.ends_with("_group") {
            self.users = true;
        }
    }

    /// Marks the resources an apply wrote.
    pub fn wrote(&mut self, address: &Address) {
        match address {
            Address::User { .. } => self.users = true,
            Address::Project { path } => {
                self.projects.insert(path.clone());
            }
            other => {
                if let Some(project) = other.project() {
                    self.projects.insert(project.to_string());
                }
            }
        }
    }
}

/// One project's last observation: its own object, its desired children, its unmanaged ones.
#[derive(Default)]
struct Seen {
    objects: Vec<(Address, Observed)>,
    unmanaged: Vec<(Address, Live)>,
}

impl Seen {
    fn failed(&self) -> bool {
        self.objects
            .iter()
            .any(|(_, o)| matches!(o, Observed::Unknown(_)))
    }
}

/// What one cycle read, for logs and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reads {
    pub full: bool,
    pub projects: usize,
    pub users: bool,
}

/// The daemon's memory of GitLab between cycles.
pub struct Watch {
    sweep_period: Duration,
    projects: HashMap<String, Seen>,
    users: BTreeMap<Address, Observed>,
    /// Position of the rotation in the sorted list of desired projects.
    cursor: usize,
    /// Projects the rotation owes (fractional).
    credit: f64,
    last: Option<Instant>,
    /// Newest `updated_at` seen in the project inventory (GitLab's clock).
    projects_since: Option<DateTime<Utc>>,
    /// `updated_at` of each project as the inventory last showed it.
    project_stamps: HashMap<String, String>,
    observed_once: bool,
}

impl Watch {
    pub fn new(sweep_period: Duration) -> Self {
        Self {
            sweep_period,
            projects: HashMap::new(),
            users: BTreeMap::new(),
            cursor: 0,
            credit: 0.0,
            last: None,
            projects_since: None,
            project_stamps: HashMap::new(),
            observed_once: false,
        }
    }

    /// The live state of the desired GitLab resources for this cycle, reading what may have
    /// changed (see the module documentation). `dirty` is taken.
    pub async fn observe(
        &mut self,
        gitlab: &Gitlab,
        desired: &[&Desired],
        dirty: Dirty,
        now: Instant,
    ) -> (LiveState, Reads) {
        let elapsed = self.last.map_or(Duration::ZERO, |l| now.duration_since(l));
        self.last = Some(now);
        let mut by_project: BTreeMap<&str, Vec<&Desired>> = BTreeMap::new();
        let mut users: Vec<&Desired> = Vec::new();
        for d in desired {
            match &d.address {
                Address::User { .. } => users.push(d),
                Address::Project { path } => by_project.entry(path).or_default().push(d),
                other => {
                    if let Some(project) = other.project() {
                        by_project.entry(project).or_default().push(d);
                    }
                }
            }
        }

        if self.sweep_period.is_zero() || !self.observed_once {
            // Watermarks first: whatever changes during the full read is seen next cycle.
            if !self.sweep_period.is_zero() {
                let _ = self.project_inventory(gitlab).await;
            }
            let live = gitlab.read(desired).await;
            self.projects.clear();
            self.users.clear();
            self.remember(&by_project, &users, live);
            self.observed_once = true;
            return (
                self.live(&by_project, &users),
                Reads {
                    full: true,
                    projects: by_project.len(),
                    users: true,
                },
            );
        }

        let mut read: BTreeSet<&str> = BTreeSet::new();
        let mut read_users = dirty.users;
        // The inventory: projects updated since the last look, users by their update time.
        match self.project_inventory(gitlab).await {
            Ok(changed) => read.extend(
                changed
                    .iter()
                    .filter_map(|p| by_project.get_key_value(p.as_str()).map(|(k, _)| *k)),
            ),
            Err(()) => read.extend(by_project.keys()),
        }
        match self.user_inventory(gitlab).await {
            Ok(fresh) => {
                for (address, observed) in fresh {
                    if self.users.contains_key(&address) {
                        self.users.insert(address, observed);
                    }
                }
            }
            Err(()) => read_users = true,
        }
        // Hooks and the daemon's own writes.
        read.extend(
            dirty
                .projects
                .iter()
                .filter_map(|p| by_project.get_key_value(p.as_str()).map(|(k, _)| *k)),
        );
        // Failed reads and desired resources the last observation does not cover.
        for (path, wanted) in &by_project {
            let covered = self.projects.get(*path).is_some_and(|seen| {
                !seen.failed()
                    && wanted
                        .iter()
                        .all(|d| seen.objects.iter().any(|(a, _)| *a == d.address))
            });
            if !covered {
                read.insert(path);
            }
        }
        if users.iter().any(|u| !self.users.contains_key(&u.address))
            || self
                .users
                .values()
                .any(|o| matches!(o, Observed::Unknown(_)))
        {
            read_users = true;
        }
        // The rotation.
        let paths: Vec<&str> = by_project.keys().copied().collect();
        if !paths.is_empty() {
            self.credit +=
                paths.len() as f64 * elapsed.as_secs_f64() / self.sweep_period.as_secs_f64();
            let due = (self.credit.floor() as usize).min(paths.len());
            self.credit -= due as f64;
            self.credit = self.credit.min(paths.len() as f64);
            for _ in 0..due {
                let at = self.cursor % paths.len();
                read.insert(paths[at]);
                self.cursor = at + 1;
                if self.cursor == paths.len() {
                    self.cursor = 0;
                    read_users = true;
                }
            }
        }

        let mut subset: Vec<&Desired> = Vec::new();
        for path in &read {
            subset.extend(by_project[path].iter().copied());
        }
        if read_users {
            subset.extend(users.iter().copied());
        }
        let reads = Reads {
            full: false,
            projects: read.len(),
            users: read_users,
        };
        if !subset.is_empty() {
            let live = gitlab.read(&subset).await;
            let read_projects: BTreeMap<&str, Vec<&Desired>> =
                read.iter().map(|p| (*p, by_project[p].clone())).collect();
            let read_user_list: Vec<&Desired> = if read_users { users.clone() } else { vec![] };
            self.remember(&read_projects, &read_user_list, live);
        }
        self.projects
            .retain(|p, _| by_project.contains_key(p.as_str()));
        (self.live(&by_project, &users), reads)
    }

    /// Keeps a read's results per project and user.
    fn remember(
        &mut self,
        projects: &BTreeMap<&str, Vec<&Desired>>,
        users: &[&Desired],
        live: LiveState,
    ) {
        let mut fresh: HashMap<String, Seen> = projects
            .keys()
            .map(|p| (p.to_string(), Seen::default()))
            .collect();
        for (address, observed) in live.objects {
            let project = match &address {
                Address::Project { path } => Some(path.clone()),
                other => other.project().map(str::to_string),
            };
            match project {
                Some(p) => fresh
                    .entry(p)
                    .or_default()
                    .objects
                    .push((address, observed)),
                None => {
                    if matches!(address, Address::User { .. }) {
                        self.users.insert(address, observed);
                    }
                }
            }
        }
        for (address, l) in live.unmanaged {
            if let Some(p) = address.project().map(str::to_string) {
                fresh.entry(p).or_default().unmanaged.push((address, l));
            }
        }
        self.projects.extend(fresh);
        let _ = users;
    }

    /// The last observation of the desired resources (and of unmanaged children).
    fn live(&self, by_project: &BTreeMap<&str, Vec<&Desired>>, users: &[&Desired]) -> LiveState {
        let mut live = LiveState::default();
        for path in by_project.keys() {
            if let Some(seen) = self.projects.get(*path) {
                live.objects.extend(seen.objects.iter().cloned());
                live.unmanaged.extend(seen.unmanaged.iter().cloned());
            }
        }
        for u in users {
            if let Some(o) = self.users.get(&u.address) {
                live.objects.insert(u.address.clone(), o.clone());
            }
        }
        live
    }

    /// Paths of the projects GitLab updated since the last look (from the watermark on,
    /// inclusive, so an update in the same millisecond is not missed; a project whose stamp did
    /// not change is not reported again).
    async fn project_inventory(&mut self, gitlab: &Gitlab) -> Result<Vec<String>, ()> {
        let first_look = self.projects_since.is_none();
        // GitLab's filter is inclusive: the watermark's own project comes again, and its
        // unchanged stamp leaves it out.
        let endpoint = crate::providers::gitlab::endpoints::ProjectsUpdatedSince {
            since: self
                .projects_since
                .map(|s| s.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        };
        // The first look only sets the watermark.
        let pages = if first_look {
            api::Pagination::Limit(1)
        } else {
            api::Pagination::All
        };
        let list: Vec<Json> = api::paged(endpoint, pages)
            .query_async(gitlab.client())
            .await
            .map_err(
                |e| tracing::warn!(error = %e, "Project inventory failed: reading every project"),
            )?;
        tracing::debug!(
            since = ?self.projects_since,
            listed = list.len(),
            "Project inventory"
        );
        let mut changed = Vec::new();
        for p in &list {
            let (Some(path), Some(stamp)) =
                (p["path_with_namespace"].as_str(), p["updated_at"].as_str())
            else {
                continue;
            };
            let path = path.to_lowercase();
            if let Ok(at) = DateTime::parse_from_rfc3339(stamp) {
                let at = at.with_timezone(&Utc);
                if self.projects_since.is_none_or(|s| at > s) {
                    self.projects_since = Some(at);
                }
            }
            if self.project_stamps.get(&path).map(String::as_str) != Some(stamp) {
                self.project_stamps.insert(path.clone(), stamp.to_string());
                if !first_look {
                    changed.push(path);
                }
            }
        }
        if first_look && self.projects_since.is_none() {
            // No project at all yet: everything from now on is new.
            self.projects_since = Some(Utc::now() - chrono::Duration::seconds(60));
        }
        Ok(changed)
    }

    /// The most recently updated users whose live state differs from the last observation
    /// (GitLab does not show a user's `updated_at`, but lists users by it). Reading every user
    /// is asked for (`Err`) when a whole page differs.
    async fn user_inventory(&mut self, gitlab: &Gitlab) -> Result<Vec<(Address, Observed)>, ()> {
        const PAGE: usize = 100;
        let endpoint = gitlab::api::users::Users::builder()
            .order_by(gitlab::api::users::UserOrderBy::UpdatedAt)
            .sort(gitlab::api::common::SortOrder::Descending)
            .build()
            .map_err(|_| ())?;
        let list: Vec<Json> = api::paged(endpoint, api::Pagination::Limit(PAGE))
            .query_async(gitlab.client())
            .await
            .map_err(|e| tracing::warn!(error = %e, "User inventory failed: reading every user"))?;
        let mut fresh = Vec::new();
        for u in &list {
            let Some(name) = u["username"].as_str() else {
                continue;
            };
            let address = Address::User {
                username: name.to_lowercase(),
            };
            let now = Observed::Present(crate::providers::gitlab::user_live(u));
            if self.users.get(&address).is_some_and(|seen| *seen != now) {
                fresh.push((address, now));
            }
        }
        if list.len() >= PAGE && fresh.len() >= PAGE {
            return Err(());
        }
        Ok(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hooks_mark_the_projects_and_users_they_name() {
        let mut dirty = Dirty::default();
        dirty.hook(
            &json!({"event_name": "project_rename", "path_with_namespace": "Team/New",
            "old_path_with_namespace": "team/old"}),
        );
        dirty.hook(&json!({"event_name": "user_update_for_team",
            "project_path_with_namespace": "team/app", "user_username": "dev1"}));
        assert_eq!(
            dirty.projects,
            BTreeSet::from(["team/new".into(), "team/old".into(), "team/app".into()])
        );
        assert!(!dirty.users, "a team event is about a project's members");
        dirty.hook(&json!({"event_name": "user_add_to_group", "user_username": "dev1"}));
        assert!(!dirty.users, "groups are not managed yet");
        dirty.hook(&json!({"event_name": "user_destroy", "username": "dev1"}));
        assert!(dirty.users);
        let mut other = Dirty::default();
        other.hook(&json!({"event_name": "repository_update"}));
        assert!(
            other.projects.is_empty() && !other.users,
            "unknown events mark nothing"
        );
    }

    #[test]
    fn the_daemons_own_writes_mark_their_project_or_the_users() {
        let mut dirty = Dirty::default();
        dirty.wrote(&Address::Variable {
            project: "team/app".into(),
            key: "K".into(),
            scope: "*".into(),
        });
        dirty.wrote(&Address::Project {
            path: "team/web".into(),
        });
        assert_eq!(
            dirty.projects,
            BTreeSet::from(["team/app".into(), "team/web".into()])
        );
        assert!(!dirty.users);
        dirty.wrote(&Address::User {
            username: "dev1".into(),
        });
        assert!(dirty.users);
    }
}
