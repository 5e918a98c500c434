# Helpers shared by the bench shell scripts; sourced, not run.

# Every server limit lifted far beyond what a run reaches, so that only the server's speed counts.
lim=(RATE_LIMIT_MESSAGES_PER_10S=100000000 RATE_LIMIT_IP_MSGS_PER_10S=1000000000
     RATE_LIMIT_ROOM_MSGS_PER_10S=100000000 RATE_LIMIT_CONN_PER_10S=100000000)

# A TCP port free right now (bound to 0 and released).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("0.0.0.0",0)); print(s.getsockname()[1])'
}

# The median of the numbers on standard input, one per line (the lower one of the middle two).
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
