// SPDX-License-Identifier: Apache-2.0
/* Placeholder until the data-path cases land: checks the header compiles. */
#include <stdio.h>
#include "skein_hbone.h"

int main(void)
{
	printf("%s\n", SKEIN_HBONE_ULP_NAME);
	return 0;
}
