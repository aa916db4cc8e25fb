/* EdgeBridge: Arduino library entry point; the core is plain C in fb_wire.c and fb_device.c. */
#ifndef EDGE_BRIDGE_H
#define EDGE_BRIDGE_H
#include "fb_device.h"
#include "fb_wire.h"
#endif
