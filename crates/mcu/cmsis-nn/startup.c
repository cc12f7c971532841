/* Minimal bare-metal start for the CMSIS-NN comparison harness: vector table, .data/.bss
   set-up, FPU enabled, semihosting output and exit (ARM semihosting: BKPT 0xAB, r0 = call,
   r1 = argument), so that QEMU's netduinoplus2 runs it like the Rust firmware. */
#include <stdint.h>

extern uint32_t _data_load, _data_start, _data_end, _bss_start, _bss_end, _stack_top;
int main(void);
void reset_handler(void);

static void fault_handler(void)
{
    for (;;) {
    }
}

__attribute__((section(".vectors"), used)) static const void *vectors[16] = {
    &_stack_top, reset_handler, fault_handler, fault_handler, fault_handler, fault_handler,
    fault_handler, 0, 0, 0, 0, fault_handler, fault_handler, 0, fault_handler, fault_handler,
};

static int semihost(int call, const void *arg)
{
    register int r0 __asm__("r0") = call;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void semihost_write(const char *s)
{
    semihost(0x04, s); /* SYS_WRITE0 */
}

void semihost_exit(int ok)
{
    /* SYS_EXIT with ADP_Stopped_ApplicationExit (0x20026) or ADP_Stopped_RunTimeErrorUnknown
       (0x20023); QEMU maps them to exit status 0 and 1. */
    semihost(0x18, (const void *)(uintptr_t)(ok ? 0x20026 : 0x20023));
    for (;;) {
    }
}

void reset_handler(void)
{
    uint32_t *src = &_data_load, *dst = &_data_start;
    while (dst < &_data_end)
        *dst++ = *src++;
    for (dst = &_bss_start; dst < &_bss_end;)
        *dst++ = 0;
    /* CPACR: full access to CP10 and CP11 (the FPU), as the hard-float ABI may use it. */
    *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20;
    __asm__ volatile("dsb\n isb");
    semihost_exit(main() == 0);
}
