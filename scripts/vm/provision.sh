#!/usr/bin/env bash
# Provisions the reconcile VM (see the Vagrantfile): GitLab CE on http://192.168.56.11 and
# `reconcile daemon` as the systemd service reconcile.service. Runs as root.
#
# Idempotent: `vagrant provision` runs it again to upgrade the binary, the unit and the copied
# desired state. It never overwrites /etc/reconcile/reconcile.env; the only changes it makes
# to it are filling in an empty GITLAB_TOKEN (a token of the administrator reconcile-bot, which
# it creates) and an empty RECONCILE_FINGERPRINT_KEY (random, once), and the git source lines
# when RECONCILE_GIT_URL is given.
#
# Approvers need nothing here: they approve held plans on the daemon's endpoint with their own
# GitLab token (POST /api/plans/{hash}/approve, Authorization: Bearer <token>), or sign with
# an SSH key registered in their GitLab profile (reconcile approve --sign).
#
# The binary: /vagrant/target/release/reconcile when it exists and runs on this VM (a Linux
# x86_64 build from the host; `cargo build --release` there first), otherwise it is built
# here from /vagrant with a rustup toolchain (`cargo build --release --locked`, target dir
# /var/cache/reconcile-build, so the host's target/ is left alone). The first build on the
# VM takes a while.
#
# Environment (all optional; the Vagrantfile passes these through from the host):
#   RECONCILE_REPO          the repository (default /vagrant)
#   EXTERNAL_URL            GitLab's URL (default http://192.168.56.11)
#   RECONCILE_BINARY        a prebuilt binary to install (default $RECONCILE_REPO/target/release/reconcile)
#   RECONCILE_BUILD=1       build on the VM even when a prebuilt binary runs
#   RECONCILE_GIT_URL       desired state from a git remote instead of the copied directory
#   RECONCILE_GIT_BRANCH    its branch (default main)
#   RECONCILE_GITLAB_TOKEN  auto (default): create the administrator reconcile-bot and a token
#                           of it for the daemon with gitlab-rails runner when reconcile.env
#                           has none; skip: don't
#   GITLAB_WAIT_SECONDS     how long to wait for GitLab to answer (default 1200)
set -euo pipefail

repo=${RECONCILE_REPO:-/vagrant}
external_url=${EXTERNAL_URL:-http://192.168.56.11}
conf_dir=/etc/reconcile
env_file=$conf_dir/reconcile.env
home_dir=/var/lib/reconcile
spec_dir=$home_dir/desired-state
state_dir=$home_dir/state
bin=/usr/local/bin/reconcile
unit=/etc/systemd/system/reconcile.service
git_dropin=/etc/systemd/system/reconcile.service.d/git-source.conf
build_dir=/var/cache/reconcile-build
rust_dir=/opt/rust
# The daemon's GitLab user: an administrator of its own, so that the plans it makes are not
# authored by an approver (self-approval is refused by user id where a gate forbids it).
bot_user=reconcile-bot
token_name=reconcile-daemon

log() { printf '\n==> provision: %s\n' "$*" >&2; }
warn() { printf 'provision: WARNING: %s\n' "$*" >&2; }

# The value of KEY in the env file (last assignment wins, as in systemd), quotes stripped.
env_value() {
  local value
  value=$(sed -n "s/^[[:space:]]*$1=//p" "$env_file" | tail -n 1)
  value=${value%\"}; value=${value#\"}; value=${value%\'}; value=${value#\'}
  printf '%s' "$value"
}

# Sets KEY=VALUE in the env file: replaces its active line(s), else the first commented-out
# `#KEY=` line, else appends. The value travels through the environment, never argv; the file
# is replaced atomically and keeps mode 0640 root:reconcile.
set_env_value() {
  local key=$1 tmp active=0
  if grep -q "^[[:space:]]*$key=" "$env_file"; then active=1; fi
  tmp=$(mktemp "$conf_dir/.reconcile.env.XXXXXX")
  KEY=$key VALUE=$2 ACTIVE=$active awk '
    BEGIN { k = ENVIRON["KEY"]; v = ENVIRON["VALUE"]; active = ENVIRON["ACTIVE"] == "1"; done = 0 }
    {
      hit = active ? ($0 ~ "^[ \t]*" k "=") : ($0 ~ "^#[ \t]*" k "=")
      if (hit) { if (!done) print k "=" v; done = 1; next }
      print
    }
    END { if (!done) print k "=" v }' "$env_file" > "$tmp"
  chown root:reconcile "$tmp"
  chmod 0640 "$tmp"
  mv -f "$tmp" "$env_file"
}

ensure_swap() {
  # GitLab wants 4 GB plus swap; a cargo build next to it wants more.
  if [ -n "$(swapon --noheadings --show 2>/dev/null)" ]; then return; fi
  log "adding a 2 GiB swap file"
  if [ ! -f /swapfile ]; then
    fallocate -l 2G /swapfile || dd if=/dev/zero of=/swapfile bs=1M count=2048 status=none
    chmod 0600 /swapfile
    mkswap /swapfile >/dev/null
  fi
  swapon /swapfile || warn "swapon /swapfile failed; continuing without swap"
  grep -q '^/swapfile ' /etc/fstab || echo '/swapfile none swap sw 0 0' >> /etc/fstab
}

install_packages() {
  log "base packages"
  apt-get update -q
  apt-get install -y -q --no-install-recommends \
    ca-certificates curl git gnupg openssl rsync apt-transport-https debian-archive-keyring
}

install_gitlab() {
  if dpkg-query -W -f='${Status}' gitlab-ce 2>/dev/null | grep -q 'install ok installed'; then
    log "GitLab CE already installed"
  else
    log "installing GitLab CE (EXTERNAL_URL=$external_url); this takes several minutes"
    if [ ! -f /etc/apt/sources.list.d/gitlab_gitlab-ce.list ]; then
      local setup
      setup=$(mktemp)
      curl -fsSL https://packages.gitlab.com/install/repositories/gitlab/gitlab-ce/script.deb.sh -o "$setup"
      bash "$setup"
      rm -f "$setup"
    fi
    EXTERNAL_URL=$external_url apt-get install -y -q gitlab-ce
  fi
  gitlab-ctl start >/dev/null 2>&1 || true
}

# Waits until GitLab answers its readiness probe (allowed from loopback by default).
wait_for_gitlab() {
  local deadline=$((SECONDS + ${GITLAB_WAIT_SECONDS:-1200}))
  log "waiting for GitLab to be ready (up to ${GITLAB_WAIT_SECONDS:-1200}s)"
  until curl -fsS -o /dev/null --max-time 10 http://127.0.0.1/-/readiness; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      warn "GitLab is not ready yet; the daemon retries with backoff (check: sudo gitlab-ctl status)"
      return 1
    fi
    sleep 10
  done
  echo "provision: GitLab is ready at $external_url" >&2
}

create_user() {
  if ! getent group reconcile >/dev/null; then groupadd --system reconcile; fi
  if getent passwd reconcile >/dev/null; then
    usermod --home "$home_dir" --shell /usr/sbin/nologin --gid reconcile reconcile
  else
    log "creating system user reconcile"
    useradd --system --gid reconcile --home-dir "$home_dir" --no-create-home \
      --shell /usr/sbin/nologin --comment "reconcile daemon" reconcile
  fi
  # The service's StateDirectory= keeps these owned by reconcile as well.
  install -d -o reconcile -g reconcile -m 0750 "$home_dir"
  install -d -o reconcile -g reconcile -m 0700 "$state_dir"
}

build_from_source() {
  log "building reconcile on the VM (cargo build --release --locked)"
  apt-get install -y -q --no-install-recommends build-essential pkg-config cmake
  export RUSTUP_HOME=$rust_dir/rustup CARGO_HOME=$rust_dir/cargo
  if [ ! -x "$CARGO_HOME/bin/cargo" ]; then
    local rustup_init
    rustup_init=$(mktemp)
    curl -fsSL https://sh.rustup.rs -o "$rustup_init"
    sh "$rustup_init" -y -q --no-modify-path --profile minimal --default-toolchain stable
    rm -f "$rustup_init"
  else
    "$CARGO_HOME/bin/rustup" update stable --no-self-update >/dev/null
  fi
  (cd "$repo" && CARGO_TARGET_DIR=$build_dir "$CARGO_HOME/bin/cargo" build --release --locked --bin reconcile)
}

install_binary() {
  local prebuilt=${RECONCILE_BINARY:-$repo/target/release/reconcile} src
  if [ "${RECONCILE_BUILD:-0}" != 1 ] && [ -x "$prebuilt" ] && "$prebuilt" --version >/dev/null 2>&1; then
    src=$prebuilt
    log "installing the prebuilt $src ($("$src" --version))"
  else
    [ "${RECONCILE_BUILD:-0}" = 1 ] || echo "provision: no runnable $prebuilt on this VM" >&2
    build_from_source
    src=$build_dir/release/reconcile
  fi
  if cmp -s "$src" "$bin"; then
    echo "provision: $bin is up to date" >&2
  else
    install -m 0755 -o root -g root "$src" "$bin"
    echo "provision: installed $bin ($("$bin" --version))" >&2
  fi
}

install_config() {
  install -d -o root -g reconcile -m 0750 "$conf_dir"
  if [ -e "$env_file" ]; then
    echo "provision: keeping $env_file" >&2
  else
    log "creating $env_file from scripts/vm/reconcile.env.example"
    install -o root -g reconcile -m 0640 "$repo/scripts/vm/reconcile.env.example" "$env_file"
  fi
  chown root:reconcile "$env_file"
  chmod 0640 "$env_file"
  if [ -e "$conf_dir/tokens" ]; then
    warn "$conf_dir/tokens is no longer read (approvers use their own GitLab token): sudo rm $conf_dir/tokens"
  fi
  create_fingerprint_key

  if [ -n "${RECONCILE_GIT_URL:-}" ]; then
    set_env_value RECONCILE_GIT_URL "$RECONCILE_GIT_URL"
    set_env_value RECONCILE_GIT_BRANCH "${RECONCILE_GIT_BRANCH:-main}"
  fi
}

# The desired state: a git remote when reconcile.env names one, else a copy of the repository's
# desired-state/ (read-only for the daemon: root-owned, group reconcile).
install_desired_state() {
  if [ -n "$(env_value RECONCILE_GIT_URL)" ]; then
    log "desired state from git (RECONCILE_GIT_URL in $env_file)"
    [ -n "$(env_value RECONCILE_GIT_BRANCH)" ] || set_env_value RECONCILE_GIT_BRANCH main
    install -d -m 0755 "$(dirname "$git_dropin")"
    # ${VAR} (braced) is expanded by systemd from the EnvironmentFile as one argument.
    cat > "$git_dropin" <<'EOF'
# Installed by scripts/vm/provision.sh because reconcile.env sets RECONCILE_GIT_URL.
[Service]
ExecStart=
ExecStart=/usr/local/bin/reconcile daemon --git ${RECONCILE_GIT_URL} --branch ${RECONCILE_GIT_BRANCH} --listen 127.0.0.1:9090
EOF
    chmod 0644 "$git_dropin"
  else
    rm -f "$git_dropin"
    log "copying $repo/desired-state to $spec_dir"
    rsync -a --delete --exclude='/.reconcile/' --chown=root:reconcile --chmod=D0750,F0640 \
      "$repo/desired-state/" "$spec_dir/"
    chown root:reconcile "$spec_dir"
  fi
}

install_unit() {
  log "installing $unit"
  install -m 0644 -o root -g root "$repo/scripts/vm/reconcile.service" "$unit"
  systemctl daemon-reload
  systemctl enable --quiet reconcile.service
}

# The reconcile key (RECONCILE_FINGERPRINT_KEY) keys the fingerprints of secret values, the
# attestations of plan authors and daemon approvals, and the records of approved applies. Made
# once, at random, when reconcile.env has none; never printed. CI must use the same value.
create_fingerprint_key() {
  if [ -n "$(env_value RECONCILE_FINGERPRINT_KEY)" ]; then
    return
  fi
  if [ -n "$(env_value GITLAB_TOKEN)" ]; then
    # Until now the key was derived from GITLAB_TOKEN: what was attested with it (approvals of
    # held plans, approved applies in the state directory) no longer verifies.
    warn "$env_file had no RECONCILE_FINGERPRINT_KEY: generating one; the daemon holds gated changes until a held plan of each scope is approved again"
  fi
  set_env_value RECONCILE_FINGERPRINT_KEY "$(openssl rand -hex 32)"
  echo "provision: wrote a random RECONCILE_FINGERPRINT_KEY into $env_file (give CI the same value)" >&2
}

# Creates the administrator $bot_user (unless it exists), gives it a token (scope api, expires
# in 364 days) and writes the token into reconcile.env: the daemon's plans are authored by
# $bot_user, never by an approver. The token is made here and handed to Rails on stdin: it is
# never printed and never on a command line. Earlier tokens of the same name are revoked.
create_gitlab_token() {
  local token out
  token="glpat-$(openssl rand -hex 20)"
  log "creating the GitLab administrator $bot_user and its token for the daemon (gitlab-rails runner; about a minute)"
  # shellcheck disable=SC2016 # Ruby code, not shell
  if out=$(printf '%s' "$token" | gitlab-rails runner '
      value = $stdin.read.strip
      abort "empty token" if value.empty?
      root = User.find_by_username("root") or abort "no root user"
      # Newer GitLab versions tie users and tokens to an organization; older ones have none.
      org = nil
      if defined?(Organizations::Organization)
        orgs = Organizations::Organization
        org = orgs.respond_to?(:default_organization) ? orgs.default_organization : orgs.first
      end
      bot = User.find_by_username("'"$bot_user"'")
      unless bot
        password = SecureRandom.hex(32)
        params = {
          username: "'"$bot_user"'", name: "reconcile bot", email: "'"$bot_user"'@reconcile.invalid",
          password: password, password_confirmation: password, skip_confirmation: true, admin: true
        }
        params[:organization_id] = org.id if org
        # Users::CreateService returns the user (older GitLab) or a ServiceResponse (newer).
        result = Users::CreateService.new(root, params).execute
        bot = result.is_a?(User) ? result : result.payload[:user]
        unless bot&.persisted?
          why = result.respond_to?(:message) ? result.message : bot&.errors&.full_messages&.join(", ")
          abort "cannot create '"$bot_user"': #{why}"
        end
      end
      bot.update!(admin: true) unless bot.admin?
      bot.personal_access_tokens.where(name: "'"$token_name"'", revoked: false).each(&:revoke!)
      attrs = { name: "'"$token_name"'", scopes: [:api], expires_at: 364.days.from_now.to_date }
      attrs[:organization] = org if org && PersonalAccessToken.new.respond_to?(:organization=)
      pat = bot.personal_access_tokens.build(attrs)
      pat.set_token(value)
      pat.save!
      puts "reconcile-token-created"
    ' 2>&1) && grep -q reconcile-token-created <<<"$out"; then
    set_env_value GITLAB_TOKEN "$token"
    echo "provision: wrote GITLAB_TOKEN (token \"$token_name\" of the administrator $bot_user) into $env_file" >&2
    return 0
  fi
  warn "could not create a GitLab token automatically:"
  printf '%s\n' "$out" | tail -n 5 >&2
  return 1
}

# Warns when GITLAB_TOKEN belongs to someone else than $bot_user (e.g. root's token from an
# earlier provisioning): that user would author the daemon's plans. The token goes to curl on
# stdin (-K -), never on its command line.
check_token_owner() {
  local token owner
  token=$(env_value GITLAB_TOKEN)
  [ -n "$token" ] || return 0
  owner=$(printf 'header = "PRIVATE-TOKEN: %s"\n' "$token" |
    curl -fsS --max-time 10 -K - http://127.0.0.1/api/v4/user 2>/dev/null |
    sed -n 's/.*"username":"\([^"]*\)".*/\1/p' || true)
  if [ -z "$owner" ]; then
    warn "GitLab did not say who owns GITLAB_TOKEN in $env_file (GET /api/v4/user); the daemon's preflight will tell (journalctl -u reconcile)"
  elif [ "$owner" != "$bot_user" ]; then
    warn "GITLAB_TOKEN in $env_file belongs to $owner, not $bot_user: the daemon's plans are authored by $owner, whose approvals then do not count where allow_self_approval is false. To switch: empty GITLAB_TOKEN= in $env_file and run vagrant provision again"
  fi
}

print_token_help() {
  cat >&2 <<EOF

provision: GITLAB_TOKEN in $env_file is empty, so reconcile.service is enabled but not started.
  Run provisioning again once GitLab is up (vagrant provision), or by hand: create an
  administrator that approves nothing, e.g. $bot_user (Admin area > Users > New user, access
  level Administrator), and a personal access token of it with the scope api (signed in as
  $bot_user: avatar > Edit profile > Access tokens). Then put it in the env file and start:
    sudoedit $env_file        # GITLAB_TOKEN=glpat-...
    sudo systemctl restart reconcile
  Not an approver's token (e.g. root's): the daemon's plans would be authored by that approver,
  whose own approval then does not count where a gate sets allow_self_approval: false.
EOF
}

start_service() {
  if [ -z "$(env_value GITLAB_TOKEN)" ]; then
    print_token_help
    return
  fi
  log "(re)starting reconcile.service"
  systemctl restart reconcile.service
  sleep 3
  systemctl --no-pager --lines=5 status reconcile.service || true
}

main() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "provision: run as root" >&2
    exit 1
  fi
  if [ ! -d "$repo/scripts/vm" ]; then
    echo "provision: the repository is not at $repo (set RECONCILE_REPO)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive

  ensure_swap
  install_packages
  install_gitlab
  local gitlab_ready=1
  wait_for_gitlab || gitlab_ready=0
  create_user
  install_binary
  install_config
  install_desired_state
  install_unit

  if [ -z "$(env_value GITLAB_TOKEN)" ] && [ "${RECONCILE_GITLAB_TOKEN:-auto}" = auto ]; then
    if [ "$gitlab_ready" = 1 ]; then
      create_gitlab_token || true
    else
      warn "GitLab is not ready: no token created"
    fi
  elif [ "$gitlab_ready" = 1 ]; then
    check_token_owner
  fi
  start_service

  local spec_source="$spec_dir (copied from $repo/desired-state)"
  if [ -n "$(env_value RECONCILE_GIT_URL)" ]; then
    spec_source="git: branch $(env_value RECONCILE_GIT_BRANCH) of RECONCILE_GIT_URL"
  fi
  cat >&2 <<EOF

provision: done.
  GitLab:            $external_url  (initial root password: sudo cat /etc/gitlab/initial_root_password, kept 24 h)
  daemon:            systemctl status reconcile; journalctl -u reconcile -f
  health:            curl -fsS 127.0.0.1:9090/readyz   (on the VM)
  environment:       $env_file  (0640 root:reconcile; GitLab and AWS credentials)
  GitLab user:       $bot_user, an administrator (GITLAB_TOKEN: its token "$token_name")
  approvals:         curl -X POST -H "Authorization: Bearer <your GitLab token>" \\
                       127.0.0.1:9090/api/plans/HASH/approve   (scope read_user is enough)
  reconcile key:     RECONCILE_FINGERPRINT_KEY in $env_file; CI needs the same value:
                       sudo sed -n 's/^RECONCILE_FINGERPRINT_KEY=//p' $env_file
                     -> CI/CD variable RECONCILE_FINGERPRINT_KEY (masked, protected)
  desired state:     $spec_source
EOF
}

# Sourcing the script (for a test of its helpers) runs nothing.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
