"""Everything the library needs to reach the inference daemon: the wire protocol
(``protocol``), the client with deadlines and heartbeats (``client``), who may connect
(``transport``: endpoint policy and CURVE key files; ``transport_settings``: the endpoint and
key-path settings it checks; ``curve_keys``: making key pairs), where a daemon lives on this
machine (``runtime``: the private runtime dir), starting, stopping and finding one
(``daemonctl``), and one daemon per cluster node (``node_daemon``).
The daemon itself is the ``voiceman_daemon`` package (daemon/)."""
