"""Live state for scripts/demo: what the seed setup's playbooks and pipelines left behind, drifted.

    demo_seed.py seed DIR VALUES  GitLab (python-gitlab) and AWS (boto3) from the desired state in
                                  DIR, with drift: force push on for one protected branch, one
                                  variable missing, inventory-app on an older image in staging and
                                  production; the secret values go to VALUES (0600, one a line) for
                                  the demo's leak check
    demo_seed.py people DIR OUT   the people reconcile.yaml in DIR names as approvers (root exists;
                                  the others are created) and an administrator bot that plans and
                                  applies (reconcile-bot), none of them managed by the desired
                                  state: personal access tokens (OUT/NAME.token, 0600; the bot's
                                  OUT/reconcile-bot.token and OUT/reconcile-bot.daemon.token), and
                                  the SSH public keys OUT/NAME.pub registered in their profiles
    demo_seed.py forge PLAN USER  a hand-written approvals file for PLAN naming USER (no proof)
    demo_seed.py drift            more drift, behind reconcile's back (for the daemon to correct)
    demo_seed.py show | check     the objects `drift` touches, as they are now | exit 1 if drifted
    demo_seed.py images           the image inventory-app runs in staging and production
    demo_seed.py webhook PORTFILE a Slack-style webhook receiver on 127.0.0.1 (port written to
                                  PORTFILE); prints the `text` of each message received

GITLAB_URL and AWS_ENDPOINT_URL (plus the usual AWS_* variables) must point at the loopback
emulator and moto: anything else is refused. GitLab is driven with SEED_GITLAB_TOKEN (root's
admin token, what the playbooks used; else GITLAB_TOKEN). Secret values and tokens are random,
written to Secrets Manager, GitLab and the 0600 files named above only, and never printed.
"""

import base64
import datetime
import hashlib
import json
import os
import secrets
import string
import sys
from pathlib import Path
from urllib.parse import urlparse

import boto3
import gitlab
import yaml

OLD_TAG = {"inventory-app": "1.4.1"}  # repository -> the older tag inventory-app runs live
FORCE_PUSH_ON = "root/inventory-app"  # its main branch allows force push
MISSING_VARIABLE = ("root/api-gateway", "AWS_DEFAULT_REGION")  # never created
DRIFT_BRANCH = "root/billing-app"  # `drift`: force push switched on here
DRIFT_SERVICE = ("cloud-design-cluster-staging", "billing-app-service-staging", 3)  # `drift`: desiredCount

BOT = "reconcile-bot"  # the administrator whose tokens plan and apply (CI) and run the daemon

ACCESS = {"guest": 10, "reporter": 20, "developer": 30, "maintainer": 40, "owner": 50}
BRANCH_ACCESS = {"no_access": 0, "developer": 30, "maintainer": 40, "admin": 60}


def loopback(name):
    url = os.environ.get(name, "")
    if urlparse(url).hostname != "127.0.0.1":
        sys.exit(f"demo_seed: {name} must point at 127.0.0.1 (got {url!r})")
    return url


def gl():
    token = os.environ.get("SEED_GITLAB_TOKEN") or os.environ["GITLAB_TOKEN"]
    client = gitlab.Gitlab(loopback("GITLAB_URL"), private_token=token)
    client.auth()
    return client


def aws(service):
    return boto3.client(service, endpoint_url=loopback("AWS_ENDPOINT_URL"), region_name=os.environ["AWS_REGION"])


def load(dir):
    """Every section of every YAML file under DIR, merged."""
    out = {"users": [], "projects": [], "secrets": [], "services": []}
    for path in sorted(Path(dir).rglob("*.yaml")):
        if path.name == "reconcile.yaml":
            continue
        doc = yaml.safe_load(path.read_text()) or {}
        for section in out:
            out[section] += doc.get(section) or []
    return out


def random_text(n, alphabet=string.ascii_letters + string.digits):
    return "".join(secrets.choice(alphabet) for _ in range(n))


def secret_values():
    """Demo values with the JSON keys the desired state reads (never printed)."""
    db = lambda user: {"username": f"{user}_{random_text(8).lower()}", "password": random_text(24)}  # noqa: E731
    return {
        "cloud-design/gitlab-pipeline-user": {
            "access_key_id": "AKIA" + random_text(16, string.ascii_uppercase + string.digits),
            "secret_access_key": random_text(40, string.ascii_letters + string.digits + "/+"),
        },
        "cloud-design/inventory-db": db("inventory"),
        "cloud-design/billing-db": db("billing"),
        "cloud-design/rabbitmq": db("rabbit"),
    }


def seed_aws(spec, values):
    sm, ecr, ecs = aws("secretsmanager"), aws("ecr"), aws("ecs")
    arns = {}
    for s in spec["secrets"]:
        rsp = sm.create_secret(
            Name=s["name"], Description=s.get("description", ""), SecretString=json.dumps(values[s["name"]])
        )
        arns[s["name"]] = rsp["ARN"]
    print(f"  secrets manager: {len(arns)} secrets (demo values, not shown)")

    # ECR: every tag the desired state names, the older tag running live, and a newer one.
    tags = {}
    for svc in spec["services"]:
        for c in svc["task_definition"]["containers"]:
            tags.setdefault(c["image"]["repository"], set()).add(c["image"]["tag"])
    for repo, wanted in sorted(tags.items()):
        ecr.create_repository(repositoryName=repo)
        every = sorted(wanted | {newer(max(wanted))} | ({OLD_TAG[repo]} if repo in OLD_TAG else set()))
        for tag in every:
            ecr.put_image(repositoryName=repo, imageTag=tag, imageManifest=manifest(repo, tag))
        print(f"  ecr: {repo} {' '.join(every)}")

    for cluster in sorted({svc["cluster"] for svc in spec["services"]}):
        ecs.create_cluster(clusterName=cluster)
    registry = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    for svc in spec["services"]:
        td = svc["task_definition"]
        containers = [container(c, arns, registry) for c in td["containers"]]
        arn = ecs.register_task_definition(
            family=td["family"],
            networkMode=td.get("network_mode", "bridge"),
            executionRoleArn=td["execution_role_arn"],
            taskRoleArn=td["task_role_arn"],
            requiresCompatibilities=td.get("requires_compatibilities", []),
            containerDefinitions=containers,
        )["taskDefinition"]["taskDefinitionArn"]
        d = svc["deployment"]
        deployment = {
            "minimumHealthyPercent": d["minimum_healthy_percent"],
            "maximumPercent": d["maximum_percent"],
            "deploymentCircuitBreaker": d["circuit_breaker"],
        }
        ecs.create_service(
            cluster=svc["cluster"],
            serviceName=svc["service_name"],
            taskDefinition=arn,
            desiredCount=svc["desired_count"],
            launchType=svc["launch_type"],
            deploymentConfiguration=deployment,
        )
        # moto drops CreateService's deployment configuration and starts no task; an UpdateService
        # with both sets the configuration and "runs" desiredCount tasks (a stable service).
        ecs.update_service(
            cluster=svc["cluster"],
            service=svc["service_name"],
            desiredCount=svc["desired_count"],
            deploymentConfiguration=deployment,
        )
        images = ", ".join(c["image"].rsplit("/", 1)[1] for c in containers)
        print(f"  ecs: {svc['environment']:<10} {svc['service_name']:<34} {images}  x{svc['desired_count']}")


def container(c, arns, registry):
    """The ContainerDefinition of a spec container, as the pipelines registered it (older image)."""
    tag = OLD_TAG.get(c["image"]["repository"], c["image"]["tag"])
    out = {
        "name": c["name"],
        "image": f"{registry}/{c['image']['repository']}:{tag}",
        "cpu": c.get("cpu", 0),
        "memory": c["memory"],
        "essential": True,
        "portMappings": [{"containerPort": p["container_port"], "protocol": "tcp"} for p in c.get("port_mappings", [])],
        "environment": [{"name": k, "value": v} for k, v in (c.get("environment") or {}).items()],
        "secrets": [
            {"name": k, "valueFrom": f"{arns[v['secret']]}:{v['key']}::"} for k, v in (c.get("secrets") or {}).items()
        ],
    }
    if log := c.get("log_configuration"):
        out["logConfiguration"] = {"logDriver": log["driver"], "options": log["options"]}
    if hc := c.get("health_check"):
        out["healthCheck"] = {
            "command": hc["command"],
            "interval": hc["interval"],
            "timeout": hc["timeout"],
            "retries": hc["retries"],
            "startPeriod": hc["start_period"],
        }
    return out


def newer(tag):
    parts = tag.split(".")
    return ".".join(parts[:-1] + [str(int(parts[-1]) + 1)])


def manifest(repo, tag):
    """A Docker v2 manifest unique to repo:tag (moto derives the digest from the layers)."""
    h = lambda s: "sha256:" + hashlib.sha256(s.encode()).hexdigest()  # noqa: E731
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1000, "digest": h(f"config {repo}:{tag}")},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 2000, "digest": h(f"{repo}:{tag}")}],
        }
    )


def seed_gitlab(spec, values):
    g = gl()
    ids = {}
    for u in spec["users"]:
        user = g.users.create(
            {"username": u["username"], "name": u["name"], "email": u["email"], "reset_password": True, "skip_confirmation": True}
        )
        ids[u["username"].lower()] = user.id
    print(f"  users: {' '.join(sorted(ids))}")
    for p in spec["projects"]:
        full = f"{p['namespace']}/{p['path']}"
        ns = g.namespaces.get(p["namespace"])
        project = g.projects.create(
            {
                "name": p.get("name", p["path"]),
                "path": p["path"],
                "namespace_id": ns.id,
                "description": p.get("description", ""),
                "visibility": p.get("visibility", "private"),
                "initialize_with_readme": True,
                "default_branch": p.get("default_branch", "main"),
            }
        )
        notes = []
        for m in (p.get("members") or {}).get("items", []):
            project.members.create({"user_id": ids[m["user"].lower()], "access_level": ACCESS[m["access"]]})
        for b in (p.get("protected_branches") or {}).get("items", []):
            # GitLab protects the default branch on creation (maintainers only): replace it.
            try:
                project.protectedbranches.delete(b["name"])
            except gitlab.exceptions.GitlabDeleteError:
                pass
            force = b.get("allow_force_push", False) or full == FORCE_PUSH_ON
            project.protectedbranches.create(
                {
                    "name": b["name"],
                    "push_access_level": BRANCH_ACCESS[b["push"]],
                    "merge_access_level": BRANCH_ACCESS[b["merge"]],
                    "allow_force_push": force,
                }
            )
            if force:
                notes.append(f"DRIFT: {b['name']} allows force push")
        for v in (p.get("variables") or {}).get("items", []):
            if (full, v["key"]) == MISSING_VARIABLE:
                notes.append(f"DRIFT: variable {v['key']} missing")
                continue
            value = v["value"] if "value" in v else values[v["from"]["secret"]][v["from"]["key"]]
            project.variables.create(
                {"key": v["key"], "value": value, "protected": v.get("protected", False), "masked": v.get("masked", False)}
            )
        members = len((p.get("members") or {}).get("items", []))
        variables = len((p.get("variables") or {}).get("items", []))
        print(f"  project {full}: {members} members, protected main, {variables} variables" + "".join(f"  {n}" for n in notes))


def approvers(dir):
    """Every approver reconcile.yaml names (GitLab usernames), in order of appearance."""
    config = yaml.safe_load((Path(dir) / "reconcile.yaml").read_text()) or {}
    gates = [(config.get("gitlab") or {}).get("approval") or {}]
    gates += [(env or {}).get("approval") or {} for env in (config.get("environments") or {}).values()]
    return list(dict.fromkeys(name.lower() for gate in gates for name in gate.get("approvers") or []))


def fingerprint(public_key):
    """The SHA256 fingerprint of an OpenSSH public key line, as ssh-keygen -l and GitLab show it."""
    blob = base64.b64decode(public_key.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def write_secret(path, value):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")


def people(dir, out):
    """Accounts, tokens and SSH keys of the approvers and the bot (see the module docs)."""
    g = gl()
    out = Path(out)
    managed = {u["username"].lower() for u in load(dir)["users"]}
    names = approvers(dir)
    clash = sorted(managed & set(names + [BOT]))
    if clash:
        # Creating an account reconcile is to create would make the GitLab plan stale (or
        # empty); such a person gets their keys once the GitLab scope is applied.
        sys.exit(
            f"demo_seed: the desired state manages {', '.join(clash)}: create their tokens and keys after the GitLab scope is applied"
        )

    def user(username, name, admin=False):
        found = g.users.list(username=username)
        if found:
            return found[0], "existing account"
        created = g.users.create(
            {
                "username": username,
                "name": name,
                "email": f"{username}@cloud-design.example",
                "reset_password": True,
                "skip_confirmation": True,
                "admin": admin,
            }
        )
        return created, f"created (id {created.id})"

    def token(u, name, scopes, path):
        expires = (datetime.date.today() + datetime.timedelta(days=30)).isoformat()
        pat = u.personal_access_tokens.create({"name": name, "scopes": scopes, "expires_at": expires})
        write_secret(out / path, pat.token)
        return f"token {name!r} ({','.join(scopes)}) -> {path}"

    for username in names:
        u, how = user(username, username.replace("-", " ").title())
        notes = [how]
        notes.append(token(u, "approvals", ["read_user"], f"{username}.token"))
        public = out / f"{username}.pub"
        if public.exists():
            key = public.read_text().strip()
            u.keys.create({"title": f"{username} laptop", "key": key})
            notes.append(f"SSH key {fingerprint(key)} registered")
        print(f"  {username:<14} " + "; ".join(notes))
    bot, how = user(BOT, "reconcile bot", admin=True)
    notes = [f"administrator, {how}"]
    notes.append(token(bot, "reconcile-ci", ["api"], f"{BOT}.token"))
    notes.append(token(bot, "reconcile-daemon", ["api"], f"{BOT}.daemon.token"))
    print(f"  {BOT:<14} " + "; ".join(notes))
    print(f"  (none of them is in the desired state's users: {', '.join(sorted(managed))})")


def forge(plan, username):
    """An approvals file written by hand: a name, no proof."""
    sha = json.loads(Path(plan).read_text())["sha256"]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    approvals = {"approvals": [{"plan_sha256": sha, "by": username, "at": now, "comment": "LGTM"}]}
    path = f"{plan}.approvals.json"
    Path(path).write_text(json.dumps(approvals, indent=2) + "\n")
    print(f"  {path}:")
    print("    " + json.dumps(approvals, indent=2).replace("\n", "\n    "))


def branch(project):
    b = gl().projects.get(project).protectedbranches.get("main")
    return f"gitlab {project} main: allow_force_push={b.allow_force_push}"


def service():
    cluster, name, _ = DRIFT_SERVICE
    s = aws("ecs").describe_services(cluster=cluster, services=[name])["services"][0]
    return f"ecs staging {name}: desiredCount={s['desiredCount']}"


def webhook(portfile):
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                text = json.loads(body).get("text", "")
            except ValueError:
                text = f"(not JSON: {len(body)} bytes)"
            print(text.replace("\n", "\n    "), flush=True)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    Path(portfile + ".tmp").write_text(f"{server.server_address[1]}\n")
    os.rename(portfile + ".tmp", portfile)
    server.serve_forever()


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "seed" and len(sys.argv) == 4:
        spec = load(sys.argv[2])
        values = secret_values()
        fd = os.open(sys.argv[3], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.writelines(f"{v}\n" for s in values.values() for v in s.values())
        print("GitLab (python-gitlab):")
        seed_gitlab(spec, values)
        print("AWS (boto3 against moto):")
        seed_aws(spec, values)
    elif cmd == "people" and len(sys.argv) == 4:
        print("GitLab (python-gitlab, as root):")
        people(sys.argv[2], sys.argv[3])
    elif cmd == "forge" and len(sys.argv) == 4:
        forge(sys.argv[2], sys.argv[3])
    elif cmd == "drift":
        print("  before:", branch(DRIFT_BRANCH))
        print("  before:", service())
        project = gl().projects.get(DRIFT_BRANCH)
        project.protectedbranches.update("main", {"allow_force_push": True})
        cluster, name, count = DRIFT_SERVICE
        aws("ecs").update_service(cluster=cluster, service=name, desiredCount=count)
        print("  drift: ", branch(DRIFT_BRANCH))
        print("  drift: ", service())
    elif cmd == "show":
        print("  now:   ", branch(DRIFT_BRANCH))
        print("  now:   ", service())
    elif cmd == "images":
        ecs = aws("ecs")
        for cluster, name in [
            ("cloud-design-cluster-staging", "inventory-app-service-staging"),
            ("cloud-design-cluster-prod", "inventory-app-service-production"),
        ]:
            s = ecs.describe_services(cluster=cluster, services=[name])["services"][0]
            td = ecs.describe_task_definition(taskDefinition=s["taskDefinition"])["taskDefinition"]
            image = td["containerDefinitions"][0]["image"].rsplit("/", 1)[1]
            print(f"  ecs {name}: {image} ({td['family']}:{td['revision']}), {s['runningCount']}/{s['desiredCount']} running")
    elif cmd == "check":
        cluster, name, _ = DRIFT_SERVICE
        force = gl().projects.get(DRIFT_BRANCH).protectedbranches.get("main").allow_force_push
        count = aws("ecs").describe_services(cluster=cluster, services=[name])["services"][0]["desiredCount"]
        sys.exit(1 if force or count != 1 else 0)
    elif cmd == "webhook" and len(sys.argv) == 3:
        webhook(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
