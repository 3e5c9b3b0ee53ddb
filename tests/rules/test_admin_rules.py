"""The built-in admin-audit rules (locked accounts, sudo, the shadow tools) on realistic lines.

Lines are what PAM, sshd, sudo and useradd/usermod/passwd write, through the
real pipeline (`rule_env`).
"""

from __future__ import annotations

from datetime import datetime

from tests.rules.auth_lines import (
    ATTACKER,
    OFFICE,
    at,
    flagged,
    ssh_fail,
    sshd,
    syslog,
)
from tests.rules.helpers import RuleEnv

# --- locked accounts ------------------------------------------------------------------


def test_account_locked_after_failures(rule_env: RuleEnv) -> None:
    lines = [
        sshd(
            at(1),
            "pam_faillock(sshd:auth): Consecutive login failures for user alice account temporarily locked",
        ),
        syslog(
            at(2),
            "bastion",
            "login",
            "pam_faillock(login:auth): Consecutive login failures for user bob account temporarily locked",
        ),
        sshd(at(3), "pam_tally2(sshd:auth): user carol (1003) tally 4, deny 3"),
        syslog(
            at(4),
            "mail1",
            "dovecot",
            "auth: pam_tally2(dovecot:auth): user dave (1004) tally 6, deny 5",
        ),
    ]
    rule_env.ingest(lines)
    assert flagged(rule_env, "Account Locked After Failed Logins") == sorted(lines)


def test_account_locked_rule_ignores_plain_failures(rule_env: RuleEnv) -> None:
    lines = [
        sshd(
            at(1),
            "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.20  user=alice",
        ),
        sshd(at(1), "pam_faillock(sshd:auth): User unknown"),
        ssh_fail(at(1), OFFICE, "alice"),
        syslog(at(2), "bastion", "usermod", "unlock user 'alice' password"),
    ]
    rule_env.ingest(lines)
    assert flagged(rule_env, "Account Locked After Failed Logins") == []
    assert flagged(rule_env, "User Account Locked By Administrator") == []


def test_login_attempt_on_locked_account(rule_env: RuleEnv) -> None:
    hit = sshd(at(1), f"User mallory from {ATTACKER} not allowed because account is locked")
    lines = [
        hit,
        # root is locked by default on Debian/Ubuntu: every scan tries it (real fail2ban line)
        sshd(at(1), f"User root from {ATTACKER} not allowed because account is locked"),
        sshd(at(2), f"User bob from {OFFICE} not allowed because not listed in AllowUsers"),
    ]
    rule_env.ingest(lines)
    assert flagged(rule_env, "SSH Login Attempt On Locked Account") == [hit]


def test_account_locked_by_administrator(rule_env: RuleEnv) -> None:
    hit = syslog(at(1), "bastion", "usermod", "lock user 'alice' password")
    rule_env.ingest(
        [
            hit,
            syslog(
                at(2), "bastion", "usermod", "change user 'bob' shell from '/bin/sh' to '/bin/bash'"
            ),
        ]
    )
    assert flagged(rule_env, "User Account Locked By Administrator") == [hit]


# --- sudo ---------------------------------------------------------------------------------


def sudo(t: datetime, msg: str) -> str:
    return syslog(t, "bastion", "sudo", msg)


def test_sudo_commands_and_root_shells(rule_env: RuleEnv) -> None:
    apt = sudo(
        at(1), "   alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/apt update"
    )
    shell = sudo(at(2), "   alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/bash")
    su = sudo(at(3), "    bob : TTY=pts/1 ; PWD=/tmp ; USER=root ; COMMAND=/usr/bin/su -")
    session = sudo(
        at(1), "pam_unix(sudo:session): session opened for user root(uid=0) by alice(uid=1000)"
    )
    rule_env.ingest([apt, shell, su, session])
    assert flagged(rule_env, "Sudo Command Execution") == sorted([apt, shell, su])
    assert flagged(rule_env, "Sudo Interactive Root Shell") == sorted([shell, su])


def test_sudo_shell_rule_ignores_scripts_run_by_a_shell(rule_env: RuleEnv) -> None:
    lines = [
        sudo(
            at(1), "   alice : TTY=pts/0 ; PWD=/srv ; USER=root ; COMMAND=/bin/bash /srv/deploy.sh"
        ),
        sudo(
            at(1),
            "   alice : TTY=pts/0 ; PWD=/srv ; USER=root ; COMMAND=/usr/bin/systemctl restart nginx",
        ),
        sudo(
            at(1),
            "   alice : TTY=pts/0 ; PWD=/srv ; USER=root ; COMMAND=/usr/bin/sudoedit /etc/hosts",
        ),
    ]
    rule_env.ingest(lines)
    assert flagged(rule_env, "Sudo Interactive Root Shell") == []
    assert len(flagged(rule_env, "Sudo Command Execution")) == 3


def test_sudo_failures(rule_env: RuleEnv) -> None:
    fail = sudo(
        at(1),
        "   www-data : 3 incorrect password attempts ; TTY=pts/2 ; PWD=/var/www ; USER=root ; COMMAND=/bin/sh",
    )
    denied = sudo(
        at(2),
        "   mallory : user NOT in sudoers ; TTY=pts/3 ; PWD=/home/mallory ; USER=root ; COMMAND=/usr/bin/id",
    )
    rule_env.ingest([fail, denied])
    assert flagged(rule_env, "Sudo Authentication Failure") == [fail]
    assert flagged(rule_env, "Sudo Command Not Permitted") == [denied]
    assert flagged(rule_env, "Sudo Command Execution") == []
    sev = {a.rule_name: a.severity for a in rule_env.alerts()}
    assert sev["Sudo Authentication Failure"] == sev["Sudo Command Not Permitted"] == "medium"


def test_sudo_typo_then_success_is_not_a_failure(rule_env: RuleEnv) -> None:
    """sudo only writes "N incorrect password attempts" when it gave up; PAM notes the typo."""
    lines = [
        sudo(
            at(1),
            "pam_unix(sudo:auth): authentication failure; logname=alice uid=1000 euid=0 tty=/dev/pts/0 ruser=alice rhost=  user=alice",
        ),
        sudo(
            at(1.1),
            "   alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/journalctl -u nginx",
        ),
        sudo(
            at(2),
            "   cron : a password is required ; TTY=unknown ; PWD=/ ; USER=root ; COMMAND=/usr/bin/true",
        ),
    ]
    rule_env.ingest(lines)
    assert flagged(rule_env, "Sudo Authentication Failure") == []
    assert flagged(rule_env, "Sudo Command Not Permitted") == []


# --- account administration --------------------------------------------------------------


def tool(t: datetime, app: str, msg: str) -> str:
    return syslog(t, "bastion", app, msg)


def test_user_creation_and_privileged_user(rule_env: RuleEnv) -> None:
    eve = tool(
        at(1),
        "useradd",
        "new user: name=eve, UID=1001, GID=1001, home=/home/eve, shell=/bin/bash, from=/dev/pts/0",
    )
    toor = tool(
        at(2),
        "useradd",
        "new user: name=toor, UID=0, GID=0, home=/root, shell=/bin/bash, from=/dev/pts/0",
    )
    wheel = tool(
        at(3),
        "useradd",
        "new user: name=sysadm, UID=1002, GID=27, home=/home/sysadm, shell=/bin/bash, from=none",
    )
    own_group = tool(at(1), "useradd", "new group: name=eve, GID=1001")
    rule_env.ingest([eve, toor, wheel, own_group])
    assert flagged(rule_env, "Local User Account Created") == sorted([eve, toor, wheel])
    assert flagged(rule_env, "Local User Created With Root Privileges") == sorted([toor, wheel])
    assert flagged(rule_env, "Local Group Created") == []


def test_user_creation_rules_ignore_other_tools(rule_env: RuleEnv) -> None:
    lines = [
        tool(at(1), "useradd", "add 'eve' to group 'users'"),
        tool(at(1), "useradd", "new group: name=eve, GID=1001"),
        tool(at(1), "systemd-logind", "New session 12 of user eve."),
        tool(at(1), "sshd", "Accepted publickey for eve from 198.51.100.20 port 52311 ssh2"),
        tool(at(1), "useradd", "failed adding user 'eve', exit code: 9"),
    ]
    rule_env.ingest(lines)
    assert flagged(rule_env, "Local User Account Created") == []
    assert flagged(rule_env, "Local User Created With Root Privileges") == []


def test_group_and_deletion_audit(rule_env: RuleEnv) -> None:
    grp = tool(at(1), "groupadd", "new group: name=ops, GID=1002")
    grp_file = tool(at(1), "groupadd", "group added to /etc/group: name=ops, GID=1002")
    dele = tool(at(2), "userdel", "delete user 'eve'")
    rule_env.ingest(
        [grp, grp_file, dele, tool(at(2), "userdel", "removed group 'eve' owned by 'eve'")]
    )
    assert flagged(rule_env, "Local Group Created") == [grp]
    assert flagged(rule_env, "Local User Account Deleted") == [dele]


def test_privileged_group_membership(rule_env: RuleEnv) -> None:
    hits = [
        tool(at(1), "usermod", "add 'eve' to group 'sudo'"),
        tool(at(1), "usermod", "add 'eve' to shadow group 'sudo'"),
        tool(at(2), "gpasswd", "user eve added by root to group wheel"),
        tool(at(3), "useradd", "add 'svc' to group 'docker'"),
    ]
    benign = [
        tool(at(4), "usermod", "add 'eve' to group 'users'"),
        tool(at(4), "usermod", "add 'eve' to group 'sudoers-audit'"),
        tool(at(4), "gpasswd", "user eve added by root to group developers"),
        tool(at(5), "usermod", "change user 'eve' shell from '/bin/sh' to '/bin/bash'"),
    ]
    rule_env.ingest(hits + benign)
    assert flagged(rule_env, "User Added To Privileged Group") == sorted(hits)
    # the generic usermod audit skips what the privileged-group rule already flags
    assert flagged(rule_env, "Local User Account Modified") == sorted(
        [benign[0], benign[1], benign[3]]
    )


def test_password_changes(rule_env: RuleEnv) -> None:
    hits = [
        tool(at(1), "passwd", "pam_unix(passwd:chauthtok): password changed for root"),
        tool(at(2), "chpasswd", "pam_unix(chpasswd:chauthtok): password changed for eve"),
        tool(at(3), "passwd", "password for 'bob' changed by 'root'"),
    ]
    benign = [
        tool(
            at(4), "passwd", "pam_unix(passwd:chauthtok): authentication token manipulation error"
        ),
        tool(at(4), "sshd", "pam_unix(sshd:auth): password changed for alice"),  # not passwd
    ]
    rule_env.ingest(hits + benign)
    assert flagged(rule_env, "Local Account Password Changed") == sorted(hits)
