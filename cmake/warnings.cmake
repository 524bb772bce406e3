# Warnings are errors everywhere: a warning nobody fixes is noise that hides the next one.
add_compile_options(-Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
                    -Wformat=2 -Wvla -Wpointer-arith -Wundef)
