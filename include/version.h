/* version.h: the version of hl7broker, one place for every binary. */
#ifndef HL7BROKER_VERSION_H
#define HL7BROKER_VERSION_H
#define HL7BROKER_VERSION "0.1.0"
#endif
