"""Linux-PAM authentication failures logged by any program (a syslog message parser).

``pam_unix`` (and ``pam_sss``, ``pam_ldap`` ...) log one line per failed password check
under the name of the program that called PAM, whatever it is (vsftpd, proftpd,
pure-ftpd, login, su, a custom daemon)::

    pam_unix(vsftpd:auth): authentication failure; logname= uid=0 euid=0 tty=ftp ruser=bob rhost=192.0.2.1  user=bob
    (pam_unix) authentication failure; logname= uid=0 euid=0 tty= ruser= rhost=192.0.2.1
    vsftpd(pam_unix)[15522]: authentication failure; ... (old tag: the message has no module)

The syslog parser hands this module the messages that no app parser recognised (apps
with a parser of their own, sshd and dovecot, classify their PAM lines themselves, so
an attempt that sshd also logs as "Failed password" is one kind of event, not two).

The fields are written by pam_unix in a fixed order, ``user=`` last: it is the name the
client typed and may hold spaces or a fake ``rhost=``; ``ruser=`` is also client-chosen.
So the remote host is the ``rhost=`` that is followed by nothing but ``user=...``.
"""

from __future__ import annotations

import polars as pl

from lightsoc.parsers._apps import IP_RE, nullif_empty, split_host

#: cheap literal pre-filter for candidate messages
MARKER = "authentication failure;"
_SHAPE = (
    r"^(?:\(?(?P<module>pam_[A-Za-z0-9_]+)(?:\((?P<svc>[^)]*)\))?\)?:? )?authentication failure; "
)
_RHOST = r"\srhost=(?P<host>\S*)(?:\s+user=(?P<user>.*?))?\s*$"
_RUSER = r"\sruser=(\S*)"


def parse_pam(frame: pl.DataFrame) -> pl.DataFrame:
    """PAM failure messages -> authentication fields (null on rows of another shape).

    `frame` has ``message`` and ``_app`` (the normalised program name), like an app parser.
    """
    msg = frame["message"].fill_null("")
    shape = msg.str.extract_groups(_SHAPE).struct.unnest()
    tail = msg.str.extract_groups(_RHOST).struct.unnest()
    m = pl.DataFrame(
        {
            "_hit": shape["module"].is_not_null() | msg.str.starts_with(MARKER),
            "module": shape["module"],
            # "pam_unix(vsftpd:auth)": service:type; a bare "(auth)" is only the type
            "svc": shape["svc"].str.extract(r"^([^:]+):", 1),
            "host": tail["host"],
            "user": tail["user"],
            "ruser": msg.str.extract(_RUSER, 1),
            "_app": frame["_app"],
        }
    ).with_columns(pl.col("host").str.contains(IP_RE).alias("_is_ip"))
    hit = pl.col("_hit")
    ip, domain = split_host(pl.col("host"), pl.col("_is_ip"))
    user = pl.coalesce(
        nullif_empty(pl.col("user").str.strip_chars()), nullif_empty(pl.col("ruser"))
    )
    service = pl.coalesce(nullif_empty(pl.col("svc")), pl.col("_app"))
    labels = pl.when(pl.col("module").is_not_null()).then(
        pl.lit('{"pam.module":"') + pl.col("module") + '"}'
    )
    return m.select(
        pl.when(hit).then(pl.lit("authentication")).alias("event.category"),
        pl.when(hit).then(pl.lit("info")).alias("event.type"),
        pl.when(hit).then(pl.lit("pam_auth_failure")).alias("event.action"),
        pl.when(hit).then(pl.lit("failure")).alias("event.outcome"),
        pl.when(hit).then(user).alias("user.name"),
        pl.when(hit).then(ip).alias("source.ip"),
        pl.when(hit).then(domain).alias("source.domain"),
        pl.when(hit).then(service).alias("service.name"),
        pl.when(hit).then(labels).alias("labels"),
    )
