/*
 * peer.c: what the TCP sources (MLLP, HTTP) share about a peer: its
 * address as text, and whether a source's allow-list lets it in.
 */
#include "adapter.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>

#include "config.h"

void adapter_peer_format(const struct sockaddr *sa, char *out, size_t len, int *family,
                         const void **addr)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    *family = sa->sa_family;
    *addr = NULL;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
        *addr = &in->sin_addr;
        snprintf(out, len, "%s:%u", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        port = ntohs(in6->sin6_port);
        *addr = &in6->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {   /* a v4 peer on a dual-stack socket */
            inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], host, sizeof host);
            snprintf(out, len, "%s:%u", host, port);
        } else {
            inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
            snprintf(out, len, "[%s]:%u", host, port);
        }
    } else {
        snprintf(out, len, "unknown");
    }
}

bool adapter_peer_allowed(const struct config_cidr *allow, size_t n_allow, int family,
                          const void *addr)
{
    if (!n_allow)
        return true;
    for (size_t i = 0; addr && i < n_allow; i++)
        if (config_cidr_match(&allow[i], family, addr))
            return true;
    return false;
}
