"""The example `lightsoc.yml` (DESIGN section 8); `lightsoc.config.EXAMPLE` re-exports it."""

EXAMPLE = """\
# lightsoc.yml
data_dir: ./lightsoc-data
sources:
  web:
    type: file
    paths: ["/var/log/nginx/access.log*"]
    format: nginx_combined        # or auto
  auth:
    type: file
    paths: ["/var/log/auth.log"]
    format: syslog
  syslog:
    type: syslog
    listen: ["udp://0.0.0.0:5514", "tcp://0.0.0.0:5514"]
  flows:
    type: netflow
    listen: ["udp://0.0.0.0:2055"]
  dns:
    type: pcap
    interface: eth0
    filter: "udp port 53 or tcp port 53"
enrich:
  networks: {office: ["10.0.0.0/8"], dmz: ["192.168.10.0/24"]}
detect:
  rules: [builtin, ./rules]
  allow: {source.ip: ["10.100.2.1"], dns.question.registered_domain: ["baidu.com"]}
alerts:
  outputs:
    oncall: {type: wecom, url: "${WECOM_WEBHOOK}", min_severity: high}
store:
  events: duckdb                  # or clickhouse://host:9000/lightsoc
  state: sqlite                   # or postgresql://user@host/lightsoc
  retention_days: 30
bus: memory                       # or redis://host:6379/0, kafka://host:9092
web: {listen: "127.0.0.1:8000"}
"""
