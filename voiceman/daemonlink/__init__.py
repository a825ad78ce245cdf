"""Everything the library needs to reach the inference daemon: the wire protocol
(``protocol``), the client with deadlines and heartbeats (``client``), who may connect
(``transport``: endpoint policy, CURVE keys), where a daemon lives on this machine
(``runtime``: the private runtime dir) and starting/stopping/finding one (``daemonctl``).
The daemon itself is the ``voiceman_daemon`` package (daemon/)."""
