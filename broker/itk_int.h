/*
 * itk_int.h: what the ITK files share (itk_envelope.c, itk_soap.c,
 * itk_mdm.c) and nothing else: the one hardened way to read XML.
 */
#ifndef HL7BROKER_ITK_INT_H
#define HL7BROKER_ITK_INT_H

#include <stddef.h>

#include <libxml/tree.h>

#include "itk.h"

/* Read untrusted XML with the settings itk_parse uses: over max_bytes
 * (0: ITK_DEFAULT_MAX_BYTES) is ITK_E_TOO_LARGE, any DOCTYPE is
 * ITK_E_DOCTYPE, nesting over max_depth (0: ITK_DEFAULT_MAX_DEPTH) is
 * ITK_E_DEPTH; no network, no entities. On success *doc is the tree
 * (xmlFreeDoc it); on failure *doc is NULL and err says why. */
int itk_xml_read(const char *bytes, size_t len, size_t max_bytes,
                 unsigned max_depth, xmlDocPtr *doc, struct itk_error *err);

#endif
