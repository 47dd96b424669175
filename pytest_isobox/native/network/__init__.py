"""Container networking of the native engine, one module per job:

  manager    NetworkManager: networks, attach/detach of containers, the sweep (the runtime's API)
  ipam       subnet choice and address allocation (pure decisions)
  store      on-disk records (per home) and the host-wide registry of bridges
  links      bridges and host routes over netlink (rtnl); veths deleted off the caller's path
  rtnl       the batched netlink requests of a container start (veth, addresses, routes)
  firewall   tagged iptables rules of each network: forwarding beside dockerd, NAT
  nft        published ports: DNAT rules in our own nftables table, over netlink in-process
  conntrack  forgetting a removed container's tracked flows
  ports      host ports held while published
  relay      PortRelay: publishing in user space, into the container's namespace
  hosts      the /etc/hosts files that resolve peers by name and alias
  sandbox    a bare network namespace holder, for tests and benchmarks
"""
